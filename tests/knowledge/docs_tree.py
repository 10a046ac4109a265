"""A small documentation tree of a made-up web shop: ten docs with distinct sections, plus files that must not
be indexed (vendored, virtualenv, not a doc). Search questions in the tests are written against it."""

from __future__ import annotations

from pathlib import Path

DOCS: dict[str, str] = {
    "README.md": """\
# Acme Shop

Acme Shop is a small web shop: a catalogue, a cart, a checkout and payments.

## Installation

Install Python 3.11, then run `pip install -e .` in the checkout. The shop needs PostgreSQL and Redis running
locally; `make services` starts both in containers.

## Running the tests

Run `make test`. The suite starts its own database, so nothing else needs to be running.
""",
    "CONTRIBUTING.md": """\
Contributing
============

We welcome pull requests from everyone.

Code style
----------

Format the code with ruff; the line length is 120 characters. Every public function has type hints.

Commit messages
---------------

Write the subject in the imperative mood and keep it under 72 characters.
""",
    "docs/configuration.md": """\
# Configuration

All settings come from environment variables; there is no configuration file.

## Database connection

Set `SHOP_DATABASE_URL` to a PostgreSQL connection string such as
`postgresql://shop:secret@db.internal:5432/shop`. The pool keeps at most 20 connections open to the
database server. Without the variable the shop refuses to start.

## Logging

`SHOP_LOG_LEVEL` chooses the verbosity (debug, info, warning). Logs are written to stdout as JSON lines,
one object per event, so that the log collector can parse them.
""",
    "docs/deployment.md": """\
# Deployment

## Kubernetes

The Helm chart in `deploy/chart` runs three replicas of the web process behind an ingress. Database
migrations run as a pre-install hook before the new pods start.

## Rolling back a release

When a new version misbehaves in production, undo it with `helm rollback shop <revision>`: the previous
release's pods come back within a minute. Database migrations are not reverted automatically.
""",
    "docs/api.md": """\
# HTTP API

## Authentication

Every request carries an API key in the `Authorization: Bearer <key>` header. Keys are created in the admin
panel and expire after ninety days; rotate them before that.

## Rate limits

Each API key may send 600 requests per minute. A client over the limit gets the status 429 Too Many
Requests with a `Retry-After` header saying how many seconds to wait before trying again.
""",
    "docs/payments.md": """\
# Payments

Card payments go through the payment provider; the shop never stores card numbers.

## Refunds

A customer can get their money back within 30 days of the purchase. Support staff start the refund from
the order page; the logic lives in `src/payments/refunds.py`, which calls the provider and records a credit
note for the accounting export.

## Currency conversion

Prices are stored in euros and converted at checkout with the daily exchange rates of the central bank.
""",
    "docs/architecture.rst": """\
============
Architecture
============

The shop is one web process, a worker process and two stores.

Cache layer
===========

Product pages are cached in Redis. Every cached entry expires after ten minutes (its TTL), and saving a
product in the admin panel invalidates its entry at once, so stale prices never show for long.

Message queue
=============

Orders are handed to the worker through a RabbitMQ queue. Example::

    # Not a title: indented literal block
    publish("orders", order_id)
    ===========================

The worker sends the confirmation e-mail and updates the stock.
""",
    "docs/troubleshooting.md": """\
# Troubleshooting

## Out of memory errors

The worker loads whole product images into memory. If the pod is killed with OOMKilled, raise its memory
limit to 1 GiB or lower `WORKER_IMAGE_CONCURRENCY`.

## Slow checkout page

A slow checkout usually means the exchange-rate lookup timed out. Check the worker's logs for
`rates timeout` and the outbound network policy.

```bash
# A comment in a fenced block is not a heading
kubectl logs deploy/worker | grep 'rates timeout'
```
""",
    "docs/security.md": """\
# Security

## Reporting a vulnerability

Found a security hole? E-mail security@acme.example with the details and how to reproduce it. Do not open
a public issue; we answer within two working days and credit the reporter.

## Secrets handling

Secrets live in the cluster's secret store and reach the pods as environment variables. They are never
committed to the repository.
""",
    "CHANGELOG.md": """\
# Changelog

## 1.2.0

- Refunds can be started from the order page.
- API keys expire after ninety days.

## 1.1.0

- Product pages are cached.
""",
}

NOT_DOCS: dict[str, str] = {
    "node_modules/left-pad/README.md": "# left-pad\n\nPads strings on the left. Vendored: never indexed.\n",
    ".venv/lib/site/README.md": "# a virtualenv package\n\nNever indexed.\n",
    "notes.txt": "Refunds: not a doc by the default globs.\n",
    "src/payments/refunds.py": "def refund(order):\n    return order.total\n",
}


def write_tree(root: Path) -> Path:
    for rel, text in {**DOCS, **NOT_DOCS}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
