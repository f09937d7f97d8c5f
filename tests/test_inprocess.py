"""Single replies through the production dispatcher, in process (the fast tier)."""

from __future__ import annotations

from tests.support.inprocess import InProcess

USER = 4242


async def test_start_greets_an_unlinked_user_with_the_link_button(inprocess: InProcess) -> None:
    replies = await inprocess.send(USER, text="/start")
    assert len(replies) == 1
    assert "Hubungkan" in replies[0]


async def test_start_in_english_for_an_english_telegram(inprocess: InProcess) -> None:
    replies = await inprocess.send(USER, language_code="en", text="/start")
    assert len(replies) == 1
    assert "Link" in replies[0]


async def test_a_photo_where_nothing_is_expected_gets_the_menu_hint(inprocess: InProcess) -> None:
    photo = [{"file_id": "p1", "file_unique_id": "u1", "width": 10, "height": 10}]
    replies = await inprocess.send(USER, photo=photo)
    assert replies == ["Maaf, saya tidak mengerti. Silakan pilih menu di bawah, atau /bantuan."]


async def test_a_5000_character_message_is_answered_politely(inprocess: InProcess) -> None:
    replies = await inprocess.send(USER, text="x" * 5000)
    assert len(replies) == 1
    assert len(replies[0]) < 600


async def test_a_forged_button_is_answered_as_no_longer_valid(inprocess: InProcess) -> None:
    calls = await inprocess.press(USER, "rdm:yes:forged-key")
    answers = [call for call in calls if call.method == "answerCallbackQuery"]
    assert len(answers) == 1  # answered once, by the middleware
    assert answers[0].params["text"] == "Tombol ini sudah tidak berlaku."
    assert answers[0].params["show_alert"] is True
    assert [call.method for call in calls] == ["answerCallbackQuery"]


async def test_a_mangled_enum_value_fails_the_filter_itself(inprocess: InProcess) -> None:
    """`erase:maybe:…` is no EraseCB (action is yes or no): the stale answer, nothing else."""
    calls = await inprocess.press(USER, "erase:maybe:token")
    assert [call.method for call in calls] == ["answerCallbackQuery"]
    assert calls[0].params["text"] == "Tombol ini sudah tidak berlaku."
