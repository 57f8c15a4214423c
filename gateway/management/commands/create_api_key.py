from django.core.management.base import BaseCommand, CommandParser
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, as the last line; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who or what the key is for, e.g. 'backend-prod'.")

    def handle(self, *args: object, name: str, **options: object) -> None:
        api_key, key = APIKey.objects.create_key(name=name)
        self.stderr.write(
            f"Created API key {api_key.prefix!r} named {name!r}. Store it now: it "
            "cannot be shown again. Send it as `X-API-Key: <key>`."
        )
        self.stdout.write(key)
