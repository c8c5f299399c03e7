"""A job's life, one module per stage: intake (a submission checked) -> service (the front doors' calls) ->
render (pages stored, page work dispatched) -> pages (one page through one task) -> finish (outputs
assembled, final status) -> webhooks; sweep (a bucket's object becomes a job) and reconciler (overdue jobs
re-driven) beside them. Work leaves through the dispatch port (dispatch.Dispatch)."""
