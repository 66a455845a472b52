"""Browser tests: rendered emails and pages seen through Debian's Chromium via Playwright."""
