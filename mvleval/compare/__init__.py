"""The comparison side: leaderboards (CSV, Markdown, HTML), CI regression gates, baselines, reports. Reads run records only."""
