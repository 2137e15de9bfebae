"""Reading what /metrics serves: its samples by name and labels, parsed as Prometheus would."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset]


class Scrape:
    """The samples of one scrape; `scrape("jobs_sent_total", job_type="test_job")` is one value
    (the sample must be there)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: dict[Key, float] = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels}; of {name}: {self.of(name)}"
        return self.samples[key]

    def of(self, name: str) -> dict[frozenset, float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples


def scrape(settings) -> Scrape:
    """What `GET /metrics` would serve now (jobs.metrics.exposition, in this process)."""
    from jobs.metrics import exposition, known_job_types

    return Scrape(exposition(settings, known_job_types()).decode())
