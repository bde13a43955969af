"""Output to people: progress on stderr, figures, summaries and the commands tuneprune prints to run next."""
