"""Programs a person runs in a checkout (`python -m scripts.<name>`): make targets call them."""
