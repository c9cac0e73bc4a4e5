"""The two staff roles, as groups: Operations runs the stations, Finance the money.

Add a staff user to one (admin: Users → Groups). Rerunning keeps each group's permissions exactly
as listed here; give extra permissions to users, not to these groups.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Operations": [
        "stations.view_operator",
        "stations.view_location",
        "stations.add_location",
        "stations.change_location",
        "stations.view_evse",
        "stations.add_evse",
        "stations.change_evse",
        "stations.print_sticker",
        "stations.view_connector",
        "stations.add_connector",
        "stations.change_connector",
        "stations.view_tariff",
        "stations.add_tariff",
        "stations.change_tariff",
        "stations.view_printbatch",
        "stations.view_scanday",
        "stations.view_ocpiconnection",
        "stations.view_ocpisession",
        "checkout.view_chargingsession",
        "checkout.change_chargingsession",
        "checkout.stop_chargingsession",
        "checkout.view_paymentevent",
    ],
    "Finance": [
        "stations.view_operator",
        "stations.view_location",
        "stations.view_evse",
        "stations.view_tariff",
        "stations.view_ocpicdr",
        "checkout.view_chargingsession",
        "checkout.change_chargingsession",
        "checkout.view_paymentevent",
        "checkout.view_payment",
        "checkout.view_receipt",
        "checkout.export_receipts",
        "checkout.view_refund",
        "checkout.add_refund",
        "checkout.view_dispute",
        "checkout.view_stripeevent",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; these groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codes in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = []
        for code in codes:
            app_label, codename = code.split(".")
            permissions.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("checkout", "0004_staff_permissions"),
        ("stations", "0005_stickers_scans_tariff_periods"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
