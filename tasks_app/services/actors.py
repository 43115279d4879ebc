"""Who makes a change, and through which face: recorded on every TaskEvent."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from ..models import ActorKind, ApiToken, Face


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which face; recorded on every TaskEvent."""

    kind: str
    label: str
    face: str
    user: AbstractBaseUser | None = None
    token: ApiToken | None = None
    # The bulk action a change is part of: its event says so (after["bulk_action"]).
    bulk_action: int | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser, face: str = Face.DASHBOARD) -> "Actor":
        return cls(kind=ActorKind.USER, label=user.get_username(), face=face, user=user)

    @classmethod
    def for_token(cls, token: ApiToken, face: str = Face.API) -> "Actor":
        return cls(kind=ActorKind.TOKEN, label=f"token:{token.name}", face=face, token=token)

    @classmethod
    def system(cls, label: str = "system", face: str = Face.SYSTEM) -> "Actor":
        return cls(kind=ActorKind.SYSTEM, label=label, face=face)

    @property
    def user_or_none(self) -> AbstractBaseUser | None:
        return self.user if self.user is not None and self.user.is_authenticated else None
