"""The ASGI app built from the environment, for uvicorn (`timecredits api`) and `timecredits up`."""
from __future__ import annotations

from api.app import create_app
from api.limits import RateLimits
from ledger.intake import IntakePolicy
from timecredits.mail import SmtpMailer
from timecredits.settings import get_settings
from timecredits.verify_status import export_verify_status

_settings = get_settings()
if _settings.verify_status_file is not None:
    export_verify_status(_settings.verify_status_file)
app = create_app(
    database_url=_settings.database_url,
    bootstrap_servers=_settings.kafka_bootstrap_servers,
    admin_token=_settings.admin_token,
    topic_prefix=_settings.topic_prefix,
    publish_timeout_s=_settings.publish_timeout_s,
    max_body_bytes=_settings.max_body_bytes,
    rate_limits=RateLimits.of(_settings),
    policy=IntakePolicy(max_days_back=_settings.max_days_back),
    spend_code_guesses=_settings.spend_code_guesses,
    mailer=SmtpMailer(_settings) if _settings.smtp_host else None,
    dev_mailbox_dir=_settings.dev_mailbox_dir,
    max_upload_bytes=_settings.max_upload_bytes,
    no_show_forfeit=_settings.no_show_cost == "full",
)
