"""Messages: templates, messages, deliveries and their events; compose -> dispatch -> deliver."""
