"""`docvl eval`: score the model on a labelled set, submitted through the platform as a user would.

- `manifest`: the set format (one JSONL manifest), validated line by line.
- `text`, `distance`, `metrics`: normalisation, edit distances and the metrics (CER, ANLS, relaxed accuracy,
  data-value recall, olmOCR-style facts), each small and unit-tested.
- `runner`: submits every item with the Python client (bounded concurrency) and collects its page result.
- `scoring`, `report`: each item's scores, the per-task summaries, the Markdown and JSON reports.
- `converters`: the public benchmarks' local layouts (ChartMimic, Design2Code, DocVQA, ChartQA,
  olmOCR-Bench) to a set.
"""
