-- Each rotation wipes the sealed successors whose grace window has passed, among the
-- tokens of its session. A session keeps every token it was given (for reuse
-- detection), so without this the wipe would read the whole, ever-longer chain; only
-- the few tokens still holding a sealed successor are indexed here.
create index refresh_tokens_sealed_idx on refresh_tokens (session_id) where successor_sealed is not null;
