"""Training data: read (`sources`), checked and converted row by row into TRL's forms (`formats`), mixed
(`mixtures`), split (`splits`) and kept on disk (`storage`); `loading` puts it together for a recipe."""
