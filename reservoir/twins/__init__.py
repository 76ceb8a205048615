"""Digital twins: models fitted to a substrate's recorded stimulus -> response behaviour that run as substrates."""
