"""What each metric of the analyses means, in one sentence, for the report and its readers.

`define(key)` gives a metric's label and definition; keys without an entry fall back to a
definition built from the key's words and unit, so every metric shown has one.
"""

from __future__ import annotations

from tracetap.analysis.units import unit_of

__all__ = ["DEFINITIONS", "define", "label"]

# key -> one sentence (how it is computed, in TraceLab's terms where it has one).
DEFINITIONS: dict[str, str] = {
    # overview
    "total_sessions": "Distinct agent sessions in the trace.",
    "llm_rounds_total": "LLM rounds (one model invocation each) in the trace.",
    "rounds_with_visible_user_message": "Rounds whose new input starts with a user message: "
    "the user requests.",
    "rounds_started_from_tool_result": "Rounds triggered by tool results, with no new user "
    "message: the agent's autonomous steps.",
    "total_tool_calls": "Tool calls the model emitted across all rounds.",
    "rounds_with_tool_calls": "Rounds in which the model emitted at least one tool call.",
    "rounds_per_user_request": "LLM rounds divided by user requests: how many model steps "
    "one request causes.",
    "tool_calls_per_user_request": "Tool calls divided by user requests.",
    "loop_length_rounds": "Rounds from one user message to the next in a session (an "
    "autonomous loop).",
    "earliest_observed": "Time of the first event in the trace.",
    "latest_observed": "Time of the last event in the trace.",
    "rounds_by_provider": "Rounds per agent (provider).",
    "rounds_by_model": "Rounds per model, as the response named it.",
    # tokens
    "distributions": "Per-round token counts: total input, cached prefix, appended (uncached) "
    "input, adjusted append (append less the previous round's output) and output.",
    "total": "Sum over all rounds (or calls) of the measured quantity.",
    "prefix": "Input tokens served from the provider's prefix cache (prefix_tokens).",
    "append": "Input tokens not served from cache (newly_append_tokens).",
    "adjusted": "Appended tokens less the previous same-session round's output tokens.",
    "output": "Output tokens, reasoning included.",
    "hit_ratio": "Token-weighted prefix hit rate by what triggered the round.",
    "by_provider": "The token metrics per agent (provider).",
    "total_input_tokens": "Sum of input_tokens_total over rounds (prefix + append).",
    "new_input_tokens": "Sum of newly_append_tokens: input the provider had to prefill.",
    "cached_read_input_tokens": "Sum of prefix_tokens: input read from the prefix cache.",
    "prefix_hit_rate": "Token-weighted prefix hit rate: prefix_tokens / (prefix_tokens + "
    "newly_append_tokens) over all rounds.",
    "mean_round_hit_ratio": "Mean over rounds of each round's own prefix hit ratio.",
    "total_output_tokens": "Sum of output tokens over rounds.",
    "reasoning_output_tokens": "Sum of reasoning output tokens where the provider reports them.",
    "average_new_input_tokens": "Mean appended (uncached) input tokens per round.",
    "p50_prefix": "Median cached prefix tokens per round.",
    "p50_append": "Median appended input tokens per round.",
    "p50_output": "Median output tokens per round.",
    "hit_user_message": "Prefix hit rate of rounds started by a user message.",
    "hit_tool_result": "Prefix hit rate of rounds started by tool results.",
    # growth
    "all": "Same-session input growth between consecutive rounds, over all rounds.",
    "by_trigger": "Same-session input growth by what triggered the round.",
    "positive_growth_rounds": "Rounds whose input grew over the previous round's.",
    "zero_growth_rounds": "Rounds whose input equals the previous round's.",
    "negative_growth_rounds": "Rounds whose input shrank (context was cut).",
    "micro_reduction_rounds": "Rounds whose input shrank by at most 1,024 tokens.",
    "ordinary_reduction_rounds": "Rounds whose input shrank by more than 1,024 and less than "
    "64,000 tokens.",
    "major_reduction_rounds": "Rounds whose input shrank by at least 64,000 tokens (a "
    "compaction, by TraceLab's code).",
    "total_context_increase_tokens": "Sum of the positive same-session input deltas.",
    "total_raw_delta_tokens": "Sum of all same-session input deltas, reductions included.",
    "total_reduction_tokens": "Sum of the same-session input reductions.",
    "median_raw_delta_tokens": "Median same-session input delta.",
    "p10_raw_delta_tokens": "10th percentile of the same-session input delta.",
    "p90_raw_delta_tokens": "90th percentile of the same-session input delta.",
    "max_reduction_tokens": "Largest single same-session input reduction.",
    "compactions": "Input reductions of at least 64,000 tokens (TraceLab's code).",
    "compactions_50k": "Input reductions of at least 50,000 tokens (TraceLab's docs).",
    "compaction_events": "The first compactions: where a session's context was cut.",
    "redundant_prefill": "Appended tokens against real context growth: how much prefill "
    "repeats context the model saw before.",
    "append_tokens": "Sum of appended tokens over rounds with a previous round.",
    "context_increase_tokens": "Sum of positive same-session input deltas.",
    "genuinely_new_tokens": "Σ max(0, delta − previous output): user text and tool results, "
    "not the model's own output.",
    "prefill_amplification": "Σ appended tokens / Σ positive context growth: prefill work per "
    "token of real growth.",
    "genuinely_new_share_of_append": "Genuinely new tokens as a share of appended tokens.",
    # timing
    "observable_generation_seconds": "Latest input event → last model-output event of a round.",
    "decode_speed_tokens_per_second": "Output tokens / observable generation time, per round.",
    "normalized_decode_speed_tokens_per_second": "Σ output tokens / Σ generation time "
    "(TraceLab's normalized decode speed).",
    "input_to_reasoning_end_seconds": "Latest input event → end of the round's reasoning.",
    "human_wait_seconds": "Gap from the previous same-session event to each user message.",
    "human_waits_within_5_min": "Share of human waits that end within 5 minutes.",
    "time_shares": "Share of session wall time spent generating, running tools and waiting "
    "for the human.",
    "generation": "Share of session wall time the model is generating.",
    "tools": "Share of session wall time tools are running.",
    "human": "Share of session wall time spent waiting for the human.",
    # tools
    "tool_calls_with_latency": "Tool calls with a positive effective latency.",
    "tool_calls_missing_latency": "Tool calls whose result never arrived (no latency).",
    "tool_calls_nonpositive_latency": "Tool calls with a zero or negative latency, left out "
    "of percentiles.",
    "tool_calls_using_internal_latency": "Tool calls whose latency is the runner's own "
    "report (tool_internal_latency_ms).",
    "total_seconds": "Sum of effective tool latencies.",
    "p50_seconds": "Median effective tool latency (internal when reported, else wall).",
    "p90_seconds": "90th percentile of the effective tool latency.",
    "p99_seconds": "99th percentile of the effective tool latency.",
    "over_one_minute_share_of_calls": "Share of tool calls taking over a minute.",
    "over_one_minute_share_of_time": "Share of total tool time held by calls over a minute.",
    "top3_share_of_calls": "Share of calls made to the three most used tools.",
    "by_tool": "Calls, shares and latency percentiles per tool (the 15 most used).",
    "by_category": "Calls, shares and latency percentiles per tool category.",
    "latency_bins": "Share of calls against share of tool time per latency bin.",
    "share_of_calls": "This row's calls as a share of all tool calls.",
    "share_of_time": "This row's latency as a share of all tool time.",
    "p50_s": "Median effective latency.",
    "p90_s": "90th percentile of the effective latency.",
    "p99_s": "99th percentile of the effective latency.",
    # kv_timeout
    "reported_hit_rate": "The provider-reported token-weighted prefix hit rate of the trace.",
    "hit_rate_unbounded": "Hit rate if every session's KV cache were kept forever.",
    "by_timeout": "Hit rate, KV active ratio and idle storage when a session's KV cache is "
    "kept for T after each round.",
    "timeout_s": "Retention timeout T: how long a session's KV cache is kept after a round.",
    "kv_active_ratio": "gen_total / (gen_total + tool gaps ≤ T + human gaps ≤ T): the share of "
    "the kept time the cache is in use.",
    "hit_rate": "Token-weighted share of input found in the KV cache.",
    "idle_token_hours": "KV storage held while idle, in token-hours (tokens × hours kept).",
    # tool_overhead
    "method": "How the overhead was measured (exact from tokenizer segments, or estimated).",
    "exact_rounds": "Rounds measured exactly from tokenizer segments.",
    "definition_tokens_per_round": "Input tokens per round spent on tool definitions (and the "
    "system prompt when estimated).",
    "framing_tokens_per_round": "Input tokens per round spent on tool-call framing and arguments.",
    "overhead_tokens_per_session": "Definition and framing tokens summed per session.",
    "definition_share_of_input": "Tool-definition tokens as a share of all input tokens.",
    "framing_share_of_input": "Tool-call framing tokens as a share of all input tokens.",
    # append_prefill
    "model": "The cost model of the study.",
    "append_only_tokens_per_round": "Tokens prefilled per round when only the append is computed.",
    "full_recompute_tokens_per_round": "Tokens prefilled per round when the whole input is "
    "recomputed.",
    "append_only_work_share_of_full": "Append-only prefill work as a share of full recompute.",
    "padded_tokens_fifo": "Tokens computed with padding when batches form in arrival order.",
    "padded_tokens_append_aware": "Tokens computed with padding when each window is sorted by "
    "append length.",
    "useful_tokens": "Appended tokens actually needed.",
    "padding_waste_fifo": "Share of arrival-order batch work that is padding.",
    "padding_waste_append_aware": "Share of append-sorted batch work that is padding.",
    "append_aware_saving": "Padded work avoided by sorting by append length.",
    # latency_predict
    "train_calls": "Tool calls in the training sessions (the first 70 % by start time).",
    "test_calls": "Tool calls in the test sessions.",
    "train_sessions": "Sessions used for training.",
    "test_sessions": "Sessions used for testing.",
    "uses_command_features": "Whether the shell command (tools[].input) was available as a "
    "feature.",
    "features": "The features the predictor used.",
    "keep_threshold_s": "Keep a session's KV cache through a tool call iff its predicted "
    "latency is below this.",
    "methods": "Prediction error and keep-or-evict decisions per predictor.",
    "median_abs_log10_error": "Median |log10(predicted / actual)|: 0.3 is a factor of 2.",
    "mae_s": "Mean absolute error of the predicted latency.",
    "decision_accuracy": "Share of calls where keep-or-evict matched the actual latency.",
    "kept_but_long": "Calls kept though they ran past the threshold.",
    "evicted_but_short": "Calls evicted though they finished within the threshold.",
    "wasted_keep_seconds": "KV-keeping time spent on calls that ran past the threshold.",
    "avoidable_misses": "Cache misses an accurate prediction would have avoided.",
    # kv_sim
    "policies": "The eviction policies simulated.",
    "block_size": "KV block size in tokens.",
    "scope": "Whether blocks are shared across sessions (global) or per session.",
    "simulated_hit_rate_unbounded": "Simulated hit rate with unbounded capacity.",
    "ttl_matching_reported_s": "The TTL at which the simulated hit rate equals the reported one.",
    "notes": "How the simulation was set up.",
    "grid": "Hit rate, prefill tokens and idle storage per capacity and policy.",
    "capacity_tokens": "KV cache capacity in tokens (inf: unbounded).",
    "policy": "Eviction policy.",
    "prefill_tokens": "Tokens that had to be prefilled (cache misses).",
    "batch_size": "Rounds per prefill batch.",
    "sort_window": "Arrivals sorted together by append length.",
    # summaries
    "count": "How many values.",
    "mean": "Arithmetic mean.",
    "p10": "10th percentile.",
    "p50": "Median.",
    "p90": "90th percentile.",
    "p99": "99th percentile.",
    "rounds": "Rounds counted.",
    "calls": "Tool calls counted.",
    # cost
    "cost_usd": "US dollars at the price table's list prices (uncached input, cache reads, "
    "5-minute and 1-hour cache writes, output).",
    "unpriced_rounds": "Rounds of a model the price table does not know (left out of the cost).",
    "by_model": "Cost per model.",
    "by_project": "Cost per project.",
    "total_usd": "Total cost of the priced rounds.",
    "usd_per_round": "Mean cost of a priced round.",
    "usd_per_user_request": "Cost of the priced rounds per user request.",
    "cache_read_saving_usd": "What the cache reads would have cost at the uncached input price, "
    "less what they cost.",
    "priced_share": "Share of rounds with a price.",
    "price_table": "Where the prices come from and the day they were read.",
}

_UNIT_WORDS = {
    "pct": "a share",
    "seconds": "a duration",
    "ms": "a duration",
    "tokens": "tokens",
    "count": "a count",
    "date": "a time",
    "tok_s": "tokens per second",
    "times": "a ratio",
    "token_hours": "token-hours",
    "num": "a value",
}


def label(key: str) -> str:
    """A metric key as words: "prefix_hit_rate" -> "prefix hit rate"."""
    return str(key).replace("_", " ")


def define(key: str, parent: str = "") -> str:
    """The metric's one-sentence definition (a generic one naming its unit when the glossary
    has none, e.g. a tool's or a group's own name)."""
    text = DEFINITIONS.get(str(key))
    if text:
        return text
    unit = _UNIT_WORDS.get(unit_of(str(key), parent), "a value")
    whose = f" of {label(parent)}" if parent else ""
    return f"{label(key).capitalize()}{whose}, as {unit}."
