"""Run windows (start at / run until, the `scheduled` status) and a longer default reply.

Tasks still at the old default maximum reply length (4096, one Telegram message) move to
the new default (12000, sent in parts); a length an operator chose is kept.
"""

import django.core.validators
from django.db import migrations, models

OLD_DEFAULT, NEW_DEFAULT = 4096, 12000


def reply_length_raise(apps, schema_editor):
    BotTask = apps.get_model("bots", "BotTask")
    BotTask.objects.filter(max_response_length=OLD_DEFAULT).update(max_response_length=NEW_DEFAULT)


class Migration(migrations.Migration):

    dependencies = [
        ("bots", "0003_poll_owner"),
    ]

    operations = [
        migrations.AddField(
            model_name="bottask",
            name="start_at",
            field=models.DateTimeField(
                blank=True, null=True, verbose_name="start at",
                help_text="Optional. Pressing Start before this time schedules the task (status "
                "“scheduled”); it starts by itself at this time.",
            ),
        ),
        migrations.AddField(
            model_name="bottask",
            name="run_until",
            field=models.DateTimeField(
                blank=True, null=True, verbose_name="run until",
                help_text="Optional. At this time the task stops by itself (status “completed”).",
            ),
        ),
        migrations.AlterField(
            model_name="bottask",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"), ("scheduled", "Scheduled"), ("running", "Running"),
                    ("stopped", "Stopped"), ("completed", "Completed"), ("failed", "Failed"),
                ],
                db_index=True, default="pending", max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="bottask",
            name="max_response_length",
            field=models.PositiveIntegerField(
                default=NEW_DEFAULT,
                help_text="Longer replies are cut here (with “…”). Telegram takes 4096 characters "
                "a message: a longer reply is sent as several messages, in order.",
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(100000),
                ],
            ),
        ),
        # Reversing keeps 12000: a valid length, and an operator may have chosen it since.
        migrations.RunPython(reply_length_raise, migrations.RunPython.noop),
    ]
