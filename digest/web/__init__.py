"""The web app: the public subscriber pages (subscribe, confirm, preferences, unsubscribe)."""
