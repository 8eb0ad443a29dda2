"""What an alert says, in one shape for every channel: what went wrong, in which environments,
partition and steps, the first line of each error with values hidden, and the link to the run.

Every error line passes through `scrub_line` here, whatever produced it: the engine's own failures
are scrubbed where they are raised, but a message may also come from Dagster or a library.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..engine.privacy.scrub import SensitiveColumns, scrub_detail

KINDS = {
    "run_failed": "Replication failed",
    "check_failed": "Replication check failed",
    "stale": "Environment stale",
}
# Variables whose values never leave in a message: every password, token, key and identity, and
# the webhook's address (its path is the webhook's secret).
_SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|KEY|IDENTITY|WEBHOOK_URL)")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@", re.IGNORECASE)
# "replication.failures.TransientReplicationError: text" -> "text": a class path says nothing to on-call.
_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: |^[A-Z]\w*(?:Error|Exception|Failure): ")
MAX_ERROR_CHARS = 400


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    return sorted({value for name, value in environ.items() if _SECRET_NAME.search(name) and len(value) >= 4},
                  key=len, reverse=True)


def scrub_line(text: str, secrets: list[str] | None = None) -> str:
    """The first line of `text`, with secrets, URL credentials and quoted row values hidden."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    line = lines[0] if lines else "(no error message)"
    line = _EXCEPTION_PREFIX.sub("", line)
    for secret in secret_values() if secrets is None else secrets:
        line = line.replace(secret, "********")
    line = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}********@", line)
    # A SensitiveColumns that knows no table hides every key value and failing row.
    line = scrub_detail(line, SensitiveColumns(), None, None)
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """One environment's part of an alert: the step that failed (or the check) and its error."""

    environment: str
    step: str
    error: str


@dataclass(frozen=True)
class Alert:
    kind: str
    partition: str | None
    problems: tuple[Problem, ...]
    run_id: str | None = None
    run_url: str | None = None
    job: str | None = None
    # A line under the title, saying what to look at.
    summary: str | None = None

    @property
    def environments(self) -> list[str]:
        return list(dict.fromkeys(problem.environment for problem in self.problems))

    @property
    def title(self) -> str:
        where = _listed(self.environments)
        partition = f", partition {self.partition}" if self.partition else ""
        return f"{KINDS[self.kind]}: {where}{partition}"

    def text(self) -> str:
        """Plain text, one field a line: what Slack shows in notifications, the mail's body."""
        lines = [self.title]
        if self.summary:
            lines.append(self.summary)
        lines.append(f"Partition: {self.partition or '(none)'}")
        for problem in self.problems:
            lines += [f"Environment: {problem.environment}", f"Step: {problem.step}", f"Error: {problem.error}"]
        if self.run_url:
            lines.append(f"Run: {self.run_url}")
        return "\n".join(lines)

    def payload(self) -> dict:
        """The webhook's JSON: `text` for tools that show one string (Teams, Mattermost, Google Chat),
        the fields for those that route on them."""
        return {
            "text": self.text(),
            "title": self.title,
            "kind": self.kind,
            "environments": self.environments,
            "partition": self.partition,
            "problems": [{"environment": p.environment, "step": p.step, "error": p.error} for p in self.problems],
            "run_id": self.run_id,
            "run_url": self.run_url,
            "job": self.job,
            **({"summary": self.summary} if self.summary else {}),
        }

    def slack_blocks(self) -> list[dict]:
        fields = [f"*Partition*\n{_escape(self.partition or '(none)')}"]
        body = "\n".join(f"*{_escape(p.environment)}* · step `{_escape(p.step)}`\n```{_escape(p.error)}```"
                         for p in self.problems)
        blocks: list[dict] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(self.title)}*"
                                          + (f"\n{_escape(self.summary)}" if self.summary else "")}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields]},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        ]
        if self.run_url:
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "View the run in Dagster"}, "url": self.run_url}]})
        return blocks


def _escape(text: str) -> str:
    """Slack's mrkdwn reserves &, < and >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _listed(words: list[str]) -> str:
    if not words:
        return "the run"
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
