from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="toolcall",
            name="refused",
            field=models.BooleanField(
                default=False,
                help_text="Never ran: the arguments failed the tool's schema (or the tool does not exist).",
            ),
        ),
    ]
