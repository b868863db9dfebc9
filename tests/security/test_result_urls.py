"""Result URLs are input: only https from public addresses, redirects re-checked (at
most 3), never our own storage; refused results are a missing image, never a copy."""

from __future__ import annotations

import json

import httpx
import pytest

from credits.selectors import balance_of
from generation import result_urls
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory

from .conftest import stored_files

CHAIN = [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]
PUBLIC = "93.184.216.34"  # a public address literal: no DNS lookup needed


@pytest.fixture
def strict(settings):
    """The production rule (the suite relaxes it for its local fakes)."""
    settings.ALLOW_PRIVATE_RESULT_URLS = False
    settings.OFFLINE_MODE = False
    return settings


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/result.png",  # plain http
        "https://127.0.0.1/result.png",  # loopback
        "https://[::1]/result.png",
        "https://10.1.2.3/result.png",  # private
        "https://192.168.0.10/result.png",
        "https://172.16.5.5/result.png",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "https://[fe80::1]/result.png",
        "https://[::ffff:127.0.0.1]/result.png",  # loopback dressed as IPv6
        "https://100.64.0.1/result.png",  # carrier-grade NAT
        "https://localhost/result.png",  # resolves to loopback
        "https://user:pass@93.184.216.34/result.png",
        "/media/IMAGES_UPLOAD/someone-else/photo.jpg",  # our own storage: another user's photo
        "/media/offline/../IMAGES_UPLOAD/someone-else/photo.jpg",
        "/media/generated/another-result.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "",
    ],
)
def test_non_public_or_own_storage_result_urls_are_refused(strict, url):
    with pytest.raises(result_urls.ResultURLRefused):
        result_urls.check(url)


def test_a_public_https_address_is_accepted(strict):
    result_urls.check(f"https://{PUBLIC}/files/result.png")


def test_our_bucket_and_our_own_host_are_refused(strict):
    strict.MEDIA_URL = "https://bucket.example/media/"
    strict.ALLOWED_HOSTS = ["stefna.example"]
    assert result_urls.refusal("https://bucket.example/media/IMAGES_UPLOAD/x.jpg") == "an address of our own storage"
    assert result_urls.refusal("https://stefna.example/media/x.jpg") == "an address of this site"


def test_offline_results_are_accepted_only_in_offline_mode(settings):
    settings.ALLOW_PRIVATE_RESULT_URLS = False
    settings.OFFLINE_MODE = True
    assert result_urls.refusal("/media/offline/abc_0.png") is None
    assert result_urls.refusal("/media/offline/../generated/x.png") is not None
    assert result_urls.refusal("/media/offline/%2e%2e/generated/x.png") is not None
    settings.OFFLINE_MODE = False
    assert result_urls.refusal("/media/offline/abc_0.png") is not None


def _client(routes: dict[str, httpx.Response]) -> httpx.Client:
    """An httpx client whose wire is a table of answers (httpx's own mock transport)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return routes.get(str(request.url), httpx.Response(404))

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed(strict):
    requested: list[str] = []
    first = f"https://{PUBLIC}/result.png"

    def answer(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://169.254.169.254/latest/meta-data/"})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(result_urls.ResultURLRefused), result_urls.stream(client, first):
        pass
    assert requested == [first], "the private hop was never requested"


def test_at_most_three_redirects_are_followed(strict):
    hops = [f"https://{PUBLIC}/hop{n}.png" for n in range(5)]
    three = _client(
        {hops[n]: httpx.Response(302, headers={"Location": hops[n + 1]}) for n in range(3)}
        | {hops[3]: httpx.Response(200, content=b"png")}
    )
    with result_urls.stream(three, hops[0]) as response:
        assert response.status_code == 200
    four = _client({hops[n]: httpx.Response(302, headers={"Location": hops[n + 1]}) for n in range(4)})
    with pytest.raises(result_urls.ResultURLRefused, match="more than 3 redirects"), result_urls.stream(four, hops[0]):
        pass


def test_a_result_over_the_byte_bound_is_refused(strict):
    strict.MAX_RESULT_BYTES = 1000
    client = _client({f"https://{PUBLIC}/big.png": httpx.Response(200, content=b"x" * 5000)})
    with result_urls.stream(client, f"https://{PUBLIC}/big.png") as response, pytest.raises(ValueError):
        for _ in result_urls.read_chunks(response, chunk_size=100):
            pass


def test_a_result_past_its_time_bound_is_refused(strict):
    # A bound that has already passed when the first chunk arrives: what a host that
    # drips its bytes slower than RESULT_FETCH_SECONDS meets, without a test that waits.
    strict.RESULT_FETCH_SECONDS = -1
    client = _client({f"https://{PUBLIC}/slow.png": httpx.Response(200, content=b"x" * 500)})
    with result_urls.stream(client, f"https://{PUBLIC}/slow.png") as response, pytest.raises(TimeoutError):
        for _ in result_urls.read_chunks(response, chunk_size=100):
            pass


@pytest.fixture
def ghibli(db):
    return PresetFactory(kind="ghibli_reaction", model_chain=CHAIN, prompt="ghibli style, {prompt}")


def test_another_users_photo_as_a_result_is_never_copied(user, other_user, fake_fal, ghibli):
    victim = start_generation(other_user, ghibli)
    victim_photo = f"/media/{victim.source_image.name}"
    before = set(stored_files())
    fake_fal.set_result(GHIBLIFY, {"image": {"url": victim_photo, "content_type": "image/jpeg"}})

    generation = start_generation(user, ghibli)
    run_worker(generation)

    attempts = list(generation.attempts.order_by("position"))
    assert attempts[0].model == GHIBLIFY and attempts[0].status == Attempt.Status.FAILED
    media = list(Media.objects.filter(generation=generation))
    assert media and all(victim_photo not in (m.url + m.original_url) for m in media)
    victim_bytes = (stored_files_root(victim)).read_bytes()
    results = {
        path for path in set(stored_files()) - before if path.name != generation.source_image.name.rsplit("/")[-1]
    }
    assert results, "the fallback model's result was stored"
    for path in results:
        assert path.read_bytes() != victim_bytes, f"{path} is a copy of the other user's photo"


def stored_files_root(generation: Generation):
    from django.conf import settings

    assert generation.source_image.name is not None  # started with a photo
    return settings.MEDIA_ROOT / generation.source_image.name


def test_with_the_rule_on_a_loopback_result_is_refused_and_refunded(user, fake_fal, ghibli, settings):
    """The fake fal answers from 127.0.0.1: with the production rule every model's result
    is refused, nothing is fetched or stored, and the credits come back."""
    settings.ALLOW_PRIVATE_RESULT_URLS = False
    generation = start_generation(user, ghibli)
    charged = balance_of(user=user)

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED
    assert not Media.objects.filter(generation=generation, persisted=True).exists()
    assert fake_fal.calls("GET", "/files/") == []
    assert balance_of(user=user) == charged + generation.cost


def test_every_fal_submission_asks_fal_to_keep_no_history_and_expire_its_files(user, fake_fal, ghibli, settings):
    settings.FAL_RESULT_RETENTION_SECONDS = 1800
    generation = start_generation(user, ghibli)
    run_worker(generation)
    submissions = fake_fal.submissions()
    assert submissions
    for submission in submissions:
        assert submission.headers["x-fal-store-io"] == "0"
        assert json.loads(submission.headers["x-fal-object-lifecycle-preference"]) == {
            "expiration_duration_seconds": 1800
        }
