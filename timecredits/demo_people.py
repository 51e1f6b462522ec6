"""The demo's people who sign in to the web app, and a sign-in link for each, so that a newcomer can walk every
door in a minute (docs/design.md §8). Their addresses are at example.org: nothing is sent anywhere."""
from __future__ import annotations

from sqlalchemy import Engine

from web.people import PersonRole, add_person, link_url, new_link

#: (what `up` calls them, display name, role, organisation, e-mail address).
STAFF = [
    ("coordinator at Brixton Lunch Club", "Jo Mensah", PersonRole.COORDINATOR, "brixton-lunch-club",
     "jo@brixton-lunch-club.example.org"),
    ("front desk at York Hall Leisure Centre", "Sam Okafor", PersonRole.FRONT_DESK, "york-hall-leisure",
     "desk@york-hall-leisure.example.org"),
    ("programme lead", "Priya Shah", PersonRole.LEAD, None, "priya@council.example.org"),
]


def demo_sign_in_links(engine: Engine, base_url: str, volunteer_id: str) -> list[tuple[str, str]]:
    """(who, link) for the demo's coordinator, front desk, lead and one volunteer."""
    links = []
    for label, name, role, org_id, email in STAFF:
        person = add_person(engine, name, role, email=email, org_id=org_id)
        links.append((label, link_url(base_url, new_link(engine, person.id))))
    volunteer = add_person(engine, "Alex", PersonRole.VOLUNTEER, volunteer_id=volunteer_id)
    links.insert(2, (f"volunteer {volunteer_id}", link_url(base_url, new_link(engine, volunteer.id))))
    return links
