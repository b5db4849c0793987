-- Resumable uploads through upload links (issue 26, the join of 0028 and 0029): the file slot
-- (upload_link_slots.id) a tus upload through a link holds from its creation until it becomes
-- a file (committed in that file's transaction) or ends without one (released). NULL for the
-- owner's own uploads. The slot's seen_at is set to the upload's expiry, so a paused upload
-- keeps its slot for its life and the sweep gives it back.
ALTER TABLE uploads ADD COLUMN link_slot TEXT;
