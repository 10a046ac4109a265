"""GitHub webhook receiver (`codexk8s webhook serve`): verify, store, answer; the intake sensors decide."""

from .app import ReceiverSettings, WebhookConfigError, create_app, serve, signature_ok

__all__ = ["ReceiverSettings", "WebhookConfigError", "create_app", "serve", "signature_ok"]
