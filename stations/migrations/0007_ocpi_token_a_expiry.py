from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("stations", "0006_scan_clients"),
    ]

    operations = [
        migrations.AddField(
            model_name="ocpiconnection",
            name="token_a_expires_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
