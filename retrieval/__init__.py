"""Retrieval: channel searchers, the Ranking type, fusion and the Searcher facade."""
