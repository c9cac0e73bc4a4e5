from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from stations import demo, qr


class Command(BaseCommand):
    help = "Create the demo operator, locations, EVSEs and an admin user (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin-password", default="", help="Create user 'admin' with this password."
        )

    def handle(self, *args, admin_password, **options):
        evses = demo.seed()
        if admin_password:
            User = get_user_model()
            user, _ = User.objects.get_or_create(
                username="admin", defaults={"is_staff": True, "is_superuser": True}
            )
            user.is_staff = user.is_superuser = True
            user.set_password(admin_password)
            user.save()
        for evse in evses:
            self.stdout.write(f"{evse.evse_id}: {qr.url_for(evse)}")
