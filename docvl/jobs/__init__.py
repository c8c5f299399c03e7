"""A job's life, one module per stage: intake (a submission checked) -> service (the front doors' calls) ->
render (pages stored, page work dispatched; or render_reuse: an earlier render taken) -> pages (one page
through one task; or reused_pages: a job's earlier results taken together) -> finish (outputs assembled,
final status) -> webhooks; sweep (a bucket's object becomes a job) and reconciler (overdue jobs
re-driven) beside them. Work leaves through the dispatch port (dispatch.Dispatch)."""
