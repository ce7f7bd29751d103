"""The AI credential form: a stored key goes only where it was entered for; labels and
columns say what they are."""

from typing import Any

import pytest
from django.urls import reverse

from credentials.models import AICredential
from tests.conftest import GEMINI_TEST_KEY

pytestmark = pytest.mark.django_db

NEW_KEY = "AIzaSyNEW-key-typed-with-the-new-url-000001"


def form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Team key", "provider": "gemini", "api_key": "", "base_url": "",
        "model": "gemini-2.5-flash", "is_active": "on", "requests_per_minute": 60, **fields,
    }


def change(admin_client: Any, credential: AICredential, **fields: Any) -> Any:
    return admin_client.post(reverse("admin:credentials_aicredential_change", args=[credential.pk]), form(**fields))


def test_changing_the_base_url_needs_the_key_typed_again(admin_client: Any) -> None:
    credential = AICredential.objects.create(name="Team key", api_key=GEMINI_TEST_KEY)

    response = change(admin_client, credential, base_url="https://capture.example.net")

    assert response.status_code == 200  # the form again, nothing saved
    [error] = response.context["adminform"].form.errors["api_key"]
    assert error.startswith("Enter the API key again: the Base URL changed")
    stored = AICredential.objects.get()
    assert (stored.base_url, stored.api_key.reveal()) == ("", GEMINI_TEST_KEY)
    assert GEMINI_TEST_KEY not in response.content.decode()


def test_the_base_url_changes_with_the_key_typed_in_the_same_form(admin_client: Any) -> None:
    credential = AICredential.objects.create(name="Team key", api_key=GEMINI_TEST_KEY)

    response = change(admin_client, credential, base_url="https://proxy.example.net", api_key=NEW_KEY)

    assert response.status_code == 302
    stored = AICredential.objects.get()
    assert (stored.base_url, stored.api_key.reveal()) == ("https://proxy.example.net", NEW_KEY)


def test_other_edits_keep_the_stored_key(admin_client: Any) -> None:
    credential = AICredential.objects.create(
        name="Team key", api_key=GEMINI_TEST_KEY, base_url="https://proxy.example.net"
    )

    response = change(admin_client, credential, base_url="https://proxy.example.net", requests_per_minute=30)

    assert response.status_code == 302
    assert AICredential.objects.get().api_key.reveal() == GEMINI_TEST_KEY


def test_labels_say_api_key_and_base_url_and_the_offline_credential_shows_no_model(admin_client: Any) -> None:
    AICredential.objects.create(name="Demo", provider=AICredential.Provider.OFFLINE)
    saved = admin_client.post(reverse("admin:credentials_aicredential_add"),
                              form(name="Offline too", provider="offline", model="gemini-2.5-flash"))

    page = admin_client.get(reverse("admin:credentials_aicredential_add")).content.decode()
    listing = admin_client.get(reverse("admin:credentials_aicredential_changelist")).content.decode()

    assert ">API key:<" in page and ">Base URL:<" in page
    assert saved.status_code == 302
    assert AICredential.objects.get(name="Offline too").model == ""
    assert "gemini-2.5-flash" not in listing  # neither offline row names a model
