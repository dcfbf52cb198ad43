"""Who to call: current clients ranked by risk of leaving, with the reasons for it."""
