"""Helpers for the wp-admin browser tests (test_admin_*.py): headless Debian chromium driven by
Selenium, a recording HTTP server, and the fixtures those tests share."""
