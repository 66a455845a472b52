"""The web app: public subscriber pages (unsubscribe), and later editor pages and webhooks."""
