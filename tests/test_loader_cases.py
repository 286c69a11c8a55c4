"""Every row of tests/cases/loader/EXPECTED.md, with the expected turns written out by hand.

Turn notation: U/A = own user/assistant turn, S = system (context), C = tool call (own),
R = tool result (context), T = tool declarations (context).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from turns import A, C, R, S, T, U

from mads_core.data.loader import DataError, load_records

CASES = Path(__file__).parent / "cases" / "loader"


def load(name: str, **kwargs):
    return load_records(CASES / name, **kwargs)


def test_every_case_file_reads_or_refuses_and_accounts_for_every_record() -> None:
    refused = {"axolotl_input_output.jsonl", "b06_whitespace.json", "git_lfs_pointer.jsonl", "oasst1_rows.jsonl",
               "b21c_csv_quote_swallows_rows.csv"}
    names = sorted(p.name for p in CASES.iterdir() if p.name != "EXPECTED.md")
    assert len(names) == 39
    for name in names:
        if name in refused:
            with pytest.raises(DataError):
                load(name, on_error="skip")
            continue
        ds = load(name, on_error="skip")
        r = ds.report
        assert r.n_read == r.n_kept + r.n_skipped + r.n_duplicates, name
        assert r.n_kept == len(ds) > 0, name


def test_lf_alpaca_system_and_history_become_turns_and_records_stay_distinct() -> None:
    ds = load("lf_alpaca_system_history.json")
    system = S("You are a physics tutor. Answer in one sentence.")
    last = (U("And what about the second one?"),
            A("The second law says that entropy of an isolated system never decreases."))
    assert ds.turns[0] == (
        system,
        U("Name the laws of thermodynamics."), A("There are four: the zeroth, first, second and third laws."),
        U("Explain the first one."), A("Energy is conserved: it changes form but is neither created nor destroyed."),
        *last,
    )
    assert ds.turns[1] == (
        system,
        U("List Newton's laws of motion."), A("Inertia, F = ma, and action-reaction."),
        U("Explain the first one."), A("A body keeps its state of motion unless a net force acts on it."),
        *last,
    )
    assert ds.turns[2] == (U("Translate to French.\n\nGood morning"), A("Bonjour"))  # empty system: none
    assert ds.report.n_duplicates == 0 and len(ds) == 3


def test_sharegpt_function_call_observation_and_top_level_system() -> None:
    ds = load("sharegpt_toolcall_llamafactory.json")
    tools = ('[{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", '
             '"properties": {"city": {"type": "string"}}}}]')
    assert ds.turns[0] == (
        S("You can call tools."),
        T(tools),
        U("What is the weather in Paris today?"),
        C('{"name": "get_weather", "arguments": {"city": "Paris"}}'),
        R('{"temp_c": 18, "sky": "cloudy"}'),
        A("It is 18 degrees and cloudy in Paris."),
    )
    assert ds.turns[1] == (S("You are terse."), U("Say hello."), A("Hello!"))  # "tools": "[]" -> none
    assert ds.records[0]["tools"].startswith("[{")  # the field is kept as it was


def test_openai_tool_calls_and_tool_role() -> None:
    ds = load("openai_tool_calls.jsonl")
    tools = ('[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", '
             '"properties": {"city": {"type": "string"}}}}}]')
    assert ds.turns[0] == (
        S("You are a weather bot."),
        T(tools),
        U("Weather in Tokyo?"),
        C('{"name": "get_weather", "arguments": {"city": "Tokyo"}}'),
        R('{"temp": 22, "sky": "sunny"}'),
        A("It is 22 degrees and sunny in Tokyo."),
    )
    assert ds.turns[1] == (U("Weather in Rome?"), C('{"name": "get_weather", "arguments": {"city": "Rome"}}'))
    assert ds.turns[2] == (U("Thanks!"), A("You're welcome."))


def test_developer_role_is_system() -> None:
    assert load("developer_role.jsonl").turns == ((S("Answer in French."), U("Say thank you."), A("Merci.")),)


def test_openai_text_parts_joined_and_image_part_refused_clearly() -> None:
    with pytest.raises(DataError, match=r"line 2, field 'messages\[0\].content\[1\]': a 'image_url' part"):
        load("openai_content_parts.jsonl")
    ds = load("openai_content_parts.jsonl", on_error="skip")
    assert ds.turns == (
        (S("You are a helpful assistant."), U("What is the capital of Italy?"), A("Rome.")),
        (U("First part of the question:\nwhat is 2+2?"), A("4")),
        (S("Answer briefly."), U("Largest planet?"), A("Jupiter.")),
    )
    assert ds.report.n_skipped == 1


def test_llamafactory_value_parts_are_text() -> None:
    assert load("lf_v1_value_parts.jsonl").turns == (
        (U("List two planets."), A("Mars and Venus.")),
        (S("Be brief."), U("Capital of Peru?"), A("Lima.")),
    )


def test_dolly_context_joins_the_instruction() -> None:
    ds = load("dolly_context.jsonl")
    assert ds.format == "dolly"
    assert ds.turns == (
        (U("When was the bridge opened?\n\nThe Harbour Crossing is a suspension bridge finished in 1932 after "
           "eight years of work."), A("It opened in 1932.")),
        (U("Suggest a name for a pet turtle."), A("Shelby.")),
        (U("Summarise the passage in one sentence.\n\nLake Verda is a cold mountain lake. It freezes every winter "
           "and thaws in May, when trout return to its shallows."),
         A("Lake Verda freezes each winter and its trout return after the May thaw.")),
    )
    assert ds.categories == ("closed_qa", "brainstorming", "summarization")


def test_self_instruct_one_sample_per_instance() -> None:
    ds = load("self_instruct_instances.jsonl")
    assert ds.ids == ("seed_task_0#1", "seed_task_0#2", "seed_task_1#1")
    assert ds.turns == (
        (U("Convert the distance to kilometres.\n\n5 miles"), A("About 8.05 km.")),
        (U("Convert the distance to kilometres.\n\n12 miles"), A("About 19.31 km.")),
        (U("Write a short greeting for a new colleague."), A("Welcome aboard, we are glad you are here!")),
    )
    assert ds.records[1]["instances"] == [{"input": "12 miles", "output": "About 19.31 km."}]
    assert ds.records[1]["name"] == "unit_convert"  # every other field as it was


def test_mtbench_turns_are_prompt_only_questions() -> None:
    ds = load("mtbench_turns.jsonl")
    assert ds.turns == (
        (U("Write a two-line poem about autumn."), U("Now rewrite it so every word starts with the letter L.")),
        (U("What is the sum of the first five odd numbers?"),),
    )
    assert ds.categories == ("writing", "math")
    assert any("no answers" in n for n in ds.report.notes)


def test_lists_of_strings_alternate_user_and_assistant() -> None:
    lima = load("lima_conversations_strings.jsonl")
    assert lima.turns[0] == (U("Can brain cells move? By movement I mean long distance migration."),
                             A("Yes. Neurons and glia can migrate during development, for example along radial glia "
                               "fibres in the cortex."))
    assert [[t.role for t in s] for s in lima.turns] == [["user", "assistant"]] * len(lima)
    ultra = load("ultrachat_data_list.jsonl")
    assert ultra.turns == (
        (U("How can cross training benefit runners?"),
         A("Cross training builds strength in muscles that running neglects and lowers injury risk."),
         U("Which activities work best?"), A("Cycling, swimming and strength training are common choices.")),
        (U("Give me a synonym for happy."), A("Joyful.")),
    )
    assert ultra.ids == ("0", "1")


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("axolotl_oasst_upper.jsonl", (U("What is the boiling point of water at sea level?"),
                                       A("100 degrees Celsius."))),
        ("metamath_query_response.jsonl", (U("What is 15% of 80?"),
                                           A("15% of 80 is 0.15 * 80 = 12. The answer is: 12"))),
        ("instruction_response.jsonl", (U("Name a mammal that can fly."), A("The bat."))),
        ("openai_legacy_prompt_completion.jsonl", (U("Classify the sentiment: I loved this film ->"),
                                                   A(" positive"))),
    ],
)
def test_prompt_response_pairs(name: str, first: tuple) -> None:
    ds = load(name)
    assert ds.turns[0] == first
    assert all(len(t) == 2 for t in ds.turns)


def test_axolotl_segments_refused_naming_the_format() -> None:
    with pytest.raises(DataError, match=r"line 1, field 'segments': this is axolotl's template-free 'input_output'"):
        load("axolotl_input_output.jsonl")


def test_preference_pairs_read_prompt_plus_chosen() -> None:
    sharegpt = load("dpo_sharegpt_pairs.json")
    assert sharegpt.turns == (
        (U("Give me a word that rhymes with cat."), A("Hat.")),
        (U("Is 9 a prime number?"), A("No, 9 = 3 x 3.")),
    )
    messages = load("dpo_messages_pairs.jsonl")
    assert messages.turns == (
        (U("Name a warm colour."), A("Orange.")),
        (U("Translate 'bonjour' to English."), A("Hello.")),
    )
    assert messages.records[0]["rejected"] == [{"role": "assistant", "content": "Blue."}]  # kept in the record
    assert any("'rejected' is kept" in n for n in sharegpt.report.notes + messages.report.notes)


def test_kto_label_is_metadata_usable_as_category() -> None:
    ds = load("kto_labels.jsonl")
    assert ds.turns == ((U("What is 2+2?"), A("4")), (U("What is 2+3?"), A("6")))
    assert load("kto_labels.jsonl", category_column="label").categories == ("True", "False")


def test_oasst_message_rows_refused_as_rows_not_conversations() -> None:
    with pytest.raises(DataError, match=r"line 1, field 'parent_id': this is a message-tree row"):
        load("oasst1_rows.jsonl")


def test_optional_fields_found_over_all_records_and_flag_honoured() -> None:
    ds = load("openhermes_slimorca.jsonl")
    assert ds.categories == (None, "writing", "orca", "general")
    assert load("openhermes_slimorca.jsonl", category_column="source").categories == (
        "slimorca", "airoboros2.2", "metamath", "airoboros2.2")
    assert ds.turns[0] == (S("You are an AI assistant. Provide a detailed answer."), U("Is the sun a star?"),
                           A("Yes, the Sun is a G-type main-sequence star."))


def test_only_identical_records_are_exact_duplicates() -> None:
    ds = load("prompt_completions_list.jsonl")
    assert ds.ids == ("q1", "q1~2", "q2")
    assert ds.turns[0] == ds.turns[1] == (U("Write a function that returns the square of x."),)
    assert ds.report.n_duplicates == 0 and len(ds.report.same_text) == 1
    assert "line 2: same model text as" in ds.report.same_text[0]
    assert len(load("prompt_completions_list.jsonl", dedupe="text")) == 2  # when asked


def test_tsv_quotes_are_literal_and_csv_bad_quoting_is_an_error() -> None:
    tsv = load("b21b_tsv_quote_swallows_rows.tsv")
    assert tsv.turns == (
        (U('"Quoted start of a sentence'), A("answer one")),
        (U("second prompt"), A("answer two")),
        (U('the word "end'), A("answer three")),
        (U("fourth prompt"), A("answer four")),
        (U("fifth prompt"), A("answer five")),
    )
    with pytest.raises(DataError, match=r"line 2: malformed CSV quoting") as info:
        load("b21c_csv_quote_swallows_rows.csv")
    assert info.value.record == 2


def test_tsv_quoted_word_kept_exactly() -> None:
    assert load("b22_tsv_quoted_word.tsv").turns[0] == (U('"Hi" is a greeting in English'), A("yes"))


def test_long_prompt_and_long_system_read_as_whole_turns() -> None:
    # the loader keeps every word; the token window is fitted later (tests/test_encode.py)
    ds = load("i09_long_prompt_response_cut.jsonl")
    assert ds.turns[0][1] == A("It was founded in the twelfth century.")
    assert ds.turns[0][0].text.startswith("Using the passage, say in which century the harbour was founded.\n\n")
    sys_ds = load("i09b_long_system_prompt.jsonl")
    assert [t.role for t in sys_ds.turns[0]] == ["system", "user", "assistant"]
    assert sys_ds.turns[0][0].own is False


def test_short_turns_and_literal_special_tokens_are_plain_turns() -> None:
    ds = load("short_turns_template_collision.jsonl")
    assert ds.turns[2] == (U("system"), A("Could you tell me more about which system you mean?"))
    assert ds.turns[3] == (U("Type the word that is the opposite of stop."), A("start"), U("user"),
                           A("That is the word 'user'."))
    special = load("i17_special_tokens_in_text.jsonl")
    assert special.turns == ((U("What does the marker <|im_end|> mean in ChatML?"),
                              A("It closes a turn; <|im_start|> opens one.")),)


def test_float_ids_are_metadata_and_id_field_none() -> None:
    assert load("b23_float_ids.jsonl").ids == ("1", "2")
    assert load("b23_float_ids.jsonl", id_field="none").ids[0] != "1"


def test_json_array_in_jsonl_is_said_and_read() -> None:
    for name, n in (("b13_array_in_jsonl.jsonl", 2), ("b13b_array_one_per_line.jsonl", 5)):
        ds = load(name)
        assert len(ds) == n
        assert any("holds a JSON array" in note for note in ds.report.notes)
    assert load("b13b_array_one_per_line.jsonl").turns[4] == (U("q4"), A("a4"))


def test_whitespace_file_and_lfs_pointer_say_what_they_are() -> None:
    with pytest.raises(DataError, match="no records"):
        load("b06_whitespace.json")
    with pytest.raises(DataError, match="this is a Git LFS pointer, not the data: run `git lfs pull`"):
        load("git_lfs_pointer.jsonl")


def test_empty_and_null_system_turns_same_rule_and_other_roles() -> None:
    ds = load("sharegpt_null_value_and_roles.jsonl", on_error="skip")
    assert ds.ids == ("sg-1", "sg-2", "sg-4", "sg-5", "sg-6")
    assert ds.turns[1] == (U("What is 7 * 8?"), A("56"))  # null system dropped, like an empty one
    assert ds.turns[2] == (U("Search for the population of Oslo."), R("Oslo population: about 700,000"),
                           A("Oslo has about 700,000 inhabitants."))
    assert ds.turns[3] == (U("Hi"), A("Hello! How can I help?"))  # ShareGPT90K "chatgpt"
    assert ds.turns[4][1].role == "assistant"  # "bing"
    assert "line 3, field 'conversations[1].value': is null" in ds.report.skipped[0]


def test_tulu_and_ultrachat_sources_usable_as_category() -> None:
    tulu = load("tulu_v2_mix.jsonl", category_column="dataset")
    assert tulu.categories == ("flan_v2", "oasst1", "code_alpaca")
    assert tulu.turns[2] == (U("Write a Python one-liner to reverse a string s."), A("s[::-1]"))
    ultra = load("ultrachat_200k.jsonl", category_column="prompt_id", id_field="prompt_id")
    assert ultra.ids == ("a1b2", "c3d4")
    assert ultra.turns[1] == (U("Name three primary colours."), A("Red, yellow and blue."))


def test_bom_heterogeneous_records_kept_as_they_were(tmp_path: Path) -> None:
    ds = load("i03_bom_heterogeneous.jsonl")
    assert ds.records[0]["meta"] == {"source": "a"} and ds.records[1]["meta"] == {"lang": "en", "score": 3}
    # the export side (every container) is in tests/test_export.py
    assert json.loads(json.dumps(ds.records[1])) == ds.records[1]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_trl_conversational_prompt_completion_reads_message_lists(tmp_path: Path) -> None:
    # TRL's conversational prompt-completion form: both fields are message lists, mixed
    # here with the standard (string) form in the same file.
    path = _write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}],
         "completion": [{"role": "assistant", "content": "Blue."}]},
        {"prompt": "The sky is", "completion": " blue."},
    ])
    ds = load_records(path)
    assert ds.format == "table"
    assert [list(t) for t in ds.turns[0]] == [list(S("Be brief.")), list(U("Sky colour?")), list(A("Blue."))]
    assert [list(t) for t in ds.turns[1]] == [list(U("The sky is")), list(A(" blue."))]


def test_sharegpt_function_call_with_string_arguments_matches_openai_tool_call(tmp_path: Path) -> None:
    # The same call written both ways (arguments as JSON text) must give the same tool_call turn.
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    sharegpt = _write_jsonl(tmp_path / "sg.jsonl", [{"conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": '{"city": "Paris"}'})},
        {"from": "observation", "value": "18C"},
        {"from": "gpt", "value": "18C."},
    ]}])
    openai = _write_jsonl(tmp_path / "oa.jsonl", [{"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "assistant", "content": "18C."},
    ]}])
    expected = [list(U("Weather in Paris?")), list(C(call)), list(R("18C")), list(A("18C."))]
    assert [list(t) for t in load_records(sharegpt).turns[0]] == expected
    assert [list(t) for t in load_records(openai).turns[0]] == expected


def test_record_error_says_what_to_do(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [
        {"instruction": "q", "output": "a"}, {"instruction": "q2", "output": None}])
    with pytest.raises(DataError) as info:
        load_records(path)
    message = str(info.value)
    assert "bad.jsonl, line 2, field 'output'" in message and "must be a string, got null" in message
    assert "--on-error skip" in message
    skipped = load_records(path, on_error="skip")
    assert len(skipped) == 1 and skipped.report.n_skipped == 1


def test_record_fitting_two_formats_is_read_as_the_first_and_said(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "both.jsonl", [{
        "instruction": "Alpaca question", "output": "Alpaca answer",
        "messages": [{"role": "user", "content": "Chat question"}, {"role": "assistant", "content": "Chat answer"}],
    }])
    ds = load_records(path)
    assert ds.format == "chat"
    assert [list(t) for t in ds.turns[0]] == [list(U("Chat question")), list(A("Chat answer"))]
    assert any("also has the fields of format 'alpaca'" in n for n in ds.report.notes)
    other = load_records(path, fmt="alpaca")
    assert [list(t) for t in other.turns[0]] == [list(U("Alpaca question")), list(A("Alpaca answer"))]


def test_capitalised_field_names_get_a_rename_hint(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "caps.jsonl", [{"Instruction": "q", "Input": "", "Output": "a"}])
    with pytest.raises(DataError, match="rename 'Instruction' -> 'instruction'.*'Output' -> 'output'"):
        load_records(path)


def test_llamafactory_alpaca_ranking_pairs_keep_their_prompt(tmp_path: Path) -> None:
    # LLaMA-Factory's Alpaca preference schema: instruction/input/chosen/rejected (+ system, history).
    path = _write_jsonl(tmp_path / "rank.jsonl", [{
        "instruction": "Name a fruit", "input": "It is red", "chosen": "Apple", "rejected": "Car",
        "system": "Answer in one word.", "history": [["Hi", "Hello"]]}])
    ds = load_records(path)
    assert ds.format == "preference"
    assert [list(t) for t in ds.turns[0]] == [
        list(S("Answer in one word.")), list(U("Hi")), list(A("Hello")),
        list(U("Name a fruit\n\nIt is red")), list(A("Apple"))]


def test_hh_rlhf_transcripts_become_turns(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "hh.jsonl", [
        # Anthropic/hh-rlhf: the whole dialogue in each of chosen / rejected
        {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4\n\nHuman: And 3+3?\n\nAssistant: 6",
         "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 4\n\nHuman: And 3+3?\n\nAssistant: 7"},
        # the prompt/chosen split form: the prompt ends with an open "Assistant:"
        {"prompt": "\n\nHuman: Capital of France?\n\nAssistant:", "chosen": " Paris.", "rejected": " Lyon."},
    ])
    ds = load_records(path)
    assert ds.format == "preference"
    assert [list(t) for t in ds.turns[0]] == [
        list(U("What is 2+2?")), list(A("4")), list(U("And 3+3?")), list(A("6"))]
    assert [list(t) for t in ds.turns[1]] == [list(U("Capital of France?")), list(A(" Paris."))]


def test_table_without_response_column_is_said(tmp_path: Path) -> None:
    # TRL stepwise supervision: only 'prompt' is a known text field, so the sample is the prompt alone.
    path = _write_jsonl(tmp_path / "step.jsonl", [
        {"prompt": "Which is larger, 9.8 or 9.11?", "completions": ["9.11 > 9.8", "so 9.11"],
         "labels": [False, False]}])
    ds = load_records(path)
    assert [list(t) for t in ds.turns[0]] == [list(U("Which is larger, 9.8 or 9.11?"))]
    assert any("no response column" in n and "--response-column" in n for n in ds.report.notes)
