"""Production settings: safe by default, and no silent development fallbacks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    clean = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "QR_SIGNING_KEYS", "DEBUG")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the tests read the exit code
    )


def test_production_passes_the_deploy_check():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="x" * 60 + "production-secret",
        QR_SIGNING_KEYS="sticker-key",
        SECURE_HSTS_SECONDS="31536000",
    )
    # HSTS for subdomains and preloading are the operator's decisions; everything else must be clean.
    problems = [
        line
        for line in result.stdout.splitlines() + result.stderr.splitlines()
        if "(security." in line and "W021" not in line and "W005" not in line
    ]
    assert problems == [], result.stdout + result.stderr


def test_production_refuses_to_start_without_its_secrets():
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
