"""Level 5: autonomous scientific discovery in a simulated molecular biology."""
