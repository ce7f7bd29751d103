# BotTask.last_run_at was the task's heartbeat (shown on the dashboard, the admin and
# bot_status; revival reads lease_expires_at): renamed to say so, its help text fixed.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('bots', '0008_pushed_updates'),
    ]

    operations = [
        migrations.RenameField(
            model_name='bottask',
            old_name='last_run_at',
            new_name='heartbeat_at',
        ),
        migrations.AlterField(
            model_name='bottask',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, help_text="When the task last showed it is alive: a poller's, when its lease was taken or last renewed; a webhook task's, when pushed messages were last stored.", null=True, verbose_name='last heartbeat'),
        ),
    ]
