"""The "NetBox reviewers" group: open the queue and approve or reject changes (README, Reviewing)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "NetBox reviewers"
CODENAMES = ("view_changerequest", "approve_changerequest")


def create_group(apps, schema_editor):
    # Permissions are created after migrations; this group needs them now.
    config = apps.get_app_config("netboxrw")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="netboxrw", codename__in=CODENAMES)
    )


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("netboxrw", "0002_changerequest_claimed_by_and_more"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
