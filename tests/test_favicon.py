"""/favicon.ico answers: browsers ask for it on pages that name no icon (the admin's did, and got 404)."""

from django.contrib.staticfiles import finders


def test_favicon_ico_redirects_to_the_icon_and_the_icon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
    assert finders.find("favicon.svg")  # in static/, so collectstatic ships it
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)


def test_it_needs_no_sign_in(client):
    """A browser fetches it before anyone signs in (the sign-in page, the admin's login)."""
    assert client.get("/favicon.ico", follow=True).status_code == 200


def test_the_admin_and_the_desk_name_the_icon(admin_client, client):
    admin_page = admin_client.get("/admin/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in admin_page
    login_page = client.get("/login/").content.decode()
    assert 'href="/static/favicon.svg"' in login_page
