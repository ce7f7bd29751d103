from bots.formatting import FormattedText, markdown_render, split_message, truncate, utf16_len


def test_it_renders_markdown_to_entities() -> None:
    rendered = markdown_render("**bold** and _italic_, `code` and [a link](https://example.com)")

    assert rendered.text == "bold and italic, code and a link"
    kinds = {(e.type, rendered.text[e.offset : e.offset + e.length]) for e in rendered.entities}
    assert kinds == {("bold", "bold"), ("italic", "italic"), ("code", "code"), ("text_link", "a link")}


def test_it_keeps_raw_html_as_visible_text() -> None:
    rendered = markdown_render("Use <b>tags</b> & 1 < 2, but `x < y` in code")

    assert rendered.text == "Use <b>tags</b> & 1 < 2, but x < y in code"


def test_it_splits_at_paragraphs_within_the_limit() -> None:
    paragraphs = ["A" * 3000, "B" * 3000, "C" * 3000]

    parts = split_message(FormattedText("\n\n".join(paragraphs)))

    assert [p.text for p in parts] == paragraphs


def test_it_splits_at_sentences_when_a_paragraph_is_too_long() -> None:
    sentence = "This is a sentence of moderate length. "
    text = sentence * 200  # ~7,800 characters, no newlines

    parts = split_message(FormattedText(text))

    assert len(parts) == 2
    assert all(utf16_len(p.text) <= 4096 for p in parts)
    assert parts[0].text.endswith(".")
    assert "".join(p.text + " " for p in parts).split() == text.split()


def test_it_counts_utf16_units_and_never_splits_an_emoji() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units, no spaces

    parts = split_message(FormattedText(text))

    assert all(utf16_len(p.text) <= 4096 for p in parts)
    assert "".join(p.text for p in parts) == text


def test_it_clips_formatting_that_crosses_a_split() -> None:
    rendered = markdown_render("**" + ("bold words " * 600).strip() + "**")

    parts = split_message(rendered)

    assert len(parts) == 2
    for part in parts:
        assert [e.type for e in part.entities] == ["bold"]
        entity = part.entities[0]
        assert entity.offset + entity.length <= utf16_len(part.text)


def test_it_truncates_at_a_word_with_an_ellipsis() -> None:
    cut = truncate(FormattedText("one two three four five"), 12)

    assert cut.text == "one two…"
