"""``email``: a report's summary message with the PDF (and HTML) attached, sent through the SMTP
server in the environment (:mod:`~analytics_lib.scheduling.distribution.smtp`)::

    management_team:
      email: [cfo@example.com, coo@example.com]          # short form
    executives:
      email:
        to: [ceo@example.com]
        cc: [chief-of-staff@example.com]
        attach: [pdf]                                    # default [pdf, html]
        max_size_mb: 10                                  # whole message; larger -> links instead
        subject_prefix: "[Payment analytics]"
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from analytics_lib.scheduling.distribution.base import (
    DeliveryError,
    FailureNotice,
    ReportDelivery,
    Target,
)
from analytics_lib.scheduling.distribution.message import failure_message, report_message
from analytics_lib.scheduling.distribution.smtp import SmtpSettings, send

ADDRESS = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")


def _address(value: str) -> str:
    if not ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


Address = Annotated[str, AfterValidator(_address)]


class EmailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1)
    cc: list[Address] = Field(default_factory=list)
    attach: list[Literal["pdf", "html"]] = Field(default_factory=lambda: ["pdf", "html"])  # type: ignore[arg-type]
    max_size_mb: float = Field(default=10, gt=0)
    subject_prefix: str = "[Payment analytics]"

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to + self.cc))


class EmailTarget(Target):
    name = "email"
    Options = EmailOptions
    options: EmailOptions

    @classmethod
    def parse_options(cls, raw: Any) -> BaseModel:
        if isinstance(raw, (list, str)):
            raw = {"to": raw}
        return cls.Options.model_validate(raw)

    def deliver(self, delivery: ReportDelivery) -> dict[str, Any]:
        smtp = SmtpSettings.from_env()
        opts = self.options
        msg, info = report_message(delivery, sender=smtp.sender, to=opts.to, cc=opts.cc, attach=opts.attach,
                                   max_bytes=int(opts.max_size_mb * 1_048_576), prefix=opts.subject_prefix)
        refused = send(msg, opts.recipients, smtp)
        result = {"recipients": len(opts.recipients) - len(refused), "subject": str(msg["Subject"]), **info}
        if refused:
            raise DeliveryError(f"SMTP server {smtp.host} refused {', '.join(sorted(refused))}", retryable=False)
        return result

    def notify(self, notice: FailureNotice) -> dict[str, Any]:
        smtp = SmtpSettings.from_env()
        msg = failure_message(notice, sender=smtp.sender, to=self.options.to, cc=self.options.cc,
                              prefix=self.options.subject_prefix)
        refused = send(msg, self.options.recipients, smtp)
        if refused:
            raise DeliveryError(f"SMTP server {smtp.host} refused {', '.join(sorted(refused))}", retryable=False)
        return {"recipients": len(self.options.recipients), "subject": str(msg["Subject"])}
