"""Level 5b chemistry: molecule encoder, activity models, generators and objectives."""
