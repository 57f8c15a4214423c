import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first admin account from DJANGO_SUPERUSER_USERNAME/_PASSWORD/_EMAIL, or say "
        "how to create one. Does nothing when an admin account exists."
    )

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        if os.environ.get("DJANGO_SUPERUSER_USERNAME") and os.environ.get(
            "DJANGO_SUPERUSER_PASSWORD"
        ):
            call_command(
                "createsuperuser",
                interactive=False,
                email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
            )
            self.stdout.write(f"Created admin account {os.environ['DJANGO_SUPERUSER_USERNAME']!r}.")
            return
        self.stdout.write(
            "No admin account yet. Create one with `.venv/bin/python manage.py createsuperuser`, "
            "or set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD before `make run`."
        )
