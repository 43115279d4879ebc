"""Template context every page's top bar needs."""

from django.http import HttpRequest

from . import selectors
from .models import Role


def account(request: HttpRequest) -> dict:
    """The signed-in user's roles for the top bar ("Operator", "Viewer, Admin")."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    roles = set(selectors.memberships_for(user).values())
    return {"roles_label": ", ".join(label for value, label in Role.choices if value in roles)}
