"""What the demo agents work on: the same coherent pieces for `seed_demo` and the agent simulator.

Each agent has a few kinds of work (`Scenario`). One piece of work (`Work`) draws its facts
(customer, order, amount, service, pull request…) once, and everything else is written from
them: the title and the prompt, the deep-planning checklist, the tool calls with their
arguments and outputs (now and then a failure), the question a person must decide before the
risky step, the follow-up filed as a sub-task, the result or the reason it failed. So a refund
task asks about that refund, and its `issue_refund` call carries that order and amount.

Plain Python on purpose: the simulator is an HTTP client with no Django in it.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Facts = dict[str, Any]

# Which seeded agent plays which face, per organization (the simulator's agents; seed_demo's
# tasks use every agent of the organization). Organizations not listed use DEFAULT_FACES.
AGENTS = {
    "acme": ["support-bot", "billing-agent", "research-agent", "triage-agent"],
    "globex": ["ops-agent", "sales-assistant", "code-reviewer"],
}
AGENT_DESCRIPTIONS = {
    "support-bot": "Answers customer tickets about orders, deliveries and accounts.",
    "billing-agent": "Refunds, failed payments and overdue invoices; asks before moving money.",
    "research-agent": "Researches competitors and markets for sales and product.",
    "triage-agent": "Labels and routes incoming support mail; takes queued triage work.",
    "ops-agent": "Investigates alerts and incidents; asks before rolling back a deploy.",
    "sales-assistant": "Prepares sales calls and qualifies inbound leads.",
    "code-reviewer": "Reviews pull requests and chases flaky tests; asks before posting a review.",
}
FACE_AGENTS = {
    "acme": {"xpander": "support-bot", "agentex": "research-agent", "jsonrpc": "triage-agent", "api": "billing-agent"},
    "globex": {"xpander": "ops-agent", "agentex": "sales-assistant", "jsonrpc": "ops-agent", "api": "code-reviewer"},
}
DEFAULT_FACES = FACE_AGENTS["acme"]


def face_agent(org: str, face: str) -> str:
    """The agent that plays `face` for organization `org`."""
    return FACE_AGENTS.get(org, DEFAULT_FACES)[face]


def worker_name(agent: str, suffix: str) -> str:
    """A queue worker's id, after the agent whose work it takes (`triage-worker-3fa2`)."""
    return f"{agent.removesuffix('-agent').removesuffix('-bot')}-worker-{suffix}"


# --- Facts --------------------------------------------------------------------------------

CUSTOMERS = [
    ("Ada Lovelace", "ada@analytical.example"),
    ("Grace Hopper", "grace@cobol.example"),
    ("Alan Turing", "alan@bletchley.example"),
    ("Katherine Johnson", "katherine@nasa.example"),
    ("Linus Pauling", "linus@caltech.example"),
    ("Marie Curie", "marie@radium.example"),
    ("Hedy Lamarr", "hedy@spectrum.example"),
    ("Edsger Dijkstra", "edsger@paths.example"),
]
PRODUCTS = ["Trail Runner 2 shoes", "Espresso Pro grinder", "Nimbus rain jacket", "Atlas 40L backpack", "Zen desk lamp"]
ISSUES = [
    ("arrived damaged", "The box was crushed and the item is scratched."),
    ("has not arrived", "The tracking page has not moved for six days."),
    ("is the wrong size", "I ordered a medium and got a small."),
    ("was charged twice", "My card statement shows the same order twice."),
]
PLANS = ["Starter", "Team", "Business"]
COMPETITORS = ["Zendesk", "Freshdesk", "Intercom", "Help Scout", "Front"]
COMPANIES = ["Initech", "Hooli", "Pied Piper", "Umbrella Health", "Stark Logistics", "Wayne Foods", "Vandelay Imports"]
SERVICES = ["checkout-api", "search", "payments-gateway", "auth", "image-resizer", "notifications"]
REPOS = ["globex/billing", "globex/web", "globex/infra", "globex/mobile"]
PR_SUBJECTS = [
    "Add retry with backoff to the webhook sender",
    "Move invoice PDFs to object storage",
    "Drop the legacy v1 login endpoint",
    "Cache exchange rates for 10 minutes",
    "Add an index on orders.customer_id",
]
STREETS = ["Baker Street", "Rue de Rivoli", "Kurfürstendamm", "Via Roma", "Market Street", "Prinsengracht"]
CITIES = ["London", "Paris", "Berlin", "Milan", "San Francisco", "Amsterdam"]
ENGINEERS = ["priya", "marco", "lena", "tomas", "yuki"]
CHANNELS = ["#support", "#billing", "#sales", "#incidents"]
CURRENCIES = ["EUR", "USD", "GBP"]
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


def _money(rng: random.Random, low: int, high: int) -> float:
    return round(rng.randint(low * 100, high * 100) / 100, 2)


def _common(rng: random.Random) -> Facts:
    customer, email = rng.choice(CUSTOMERS)
    currency = rng.choice(CURRENCIES)
    issue, complaint = rng.choice(ISSUES)
    major, minor = rng.randint(2, 9), rng.randint(1, 30)
    company = rng.choice(COMPANIES)
    return {
        "customer": customer,
        "first_name": customer.split()[0],
        "email": email,
        "order": f"A-{rng.randint(10000, 99999)}",
        "ticket": rng.randint(20000, 89999),
        "product": rng.choice(PRODUCTS),
        "issue": issue,
        "complaint": complaint,
        "currency": currency,
        "symbol": SYMBOLS[currency],
        "amount": _money(rng, 19, 420),
        "tracking": f"1Z{rng.randint(10**9, 10**10 - 1)}",
        "days": rng.randint(2, 9),
        "invoice": f"INV-{rng.randint(2024000, 2024999)}",
        "payment": f"pay_{rng.getrandbits(48):012x}",
        "last4": f"{rng.randint(0, 9999):04d}",
        "plan": rng.choice(PLANS),
        "competitor": rng.choice(COMPETITORS),
        "company": company,
        "domain": company.lower().replace(" ", "") + ".example",
        "seats": rng.choice([12, 25, 40, 80, 150]),
        "service": rng.choice(SERVICES),
        "p99": rng.choice([850, 1200, 2300, 4100]),
        "error_rate": rng.choice([2.4, 5.1, 9.8, 14.0]),
        "version": f"v{major}.{minor}.0",
        "previous": f"v{major}.{minor - 1}.{rng.randint(1, 6)}",
        "repo": rng.choice(REPOS),
        "pr": rng.randint(1100, 4800),
        "pr_subject": rng.choice(PR_SUBJECTS),
        "author": rng.choice(ENGINEERS),
        "files": rng.randint(2, 19),
        "blocking": rng.randint(1, 4),
        "channel": rng.choice(CHANNELS),
        "batch": rng.randint(100, 999),
        "emails": rng.choice([24, 40, 57, 63]),
        "urgent": rng.randint(1, 6),
        "request": rng.randint(1000, 9999),
        "address": f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
    }


# --- Tools --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One tool call of a scenario: its arguments and output from the facts, and how it fails."""

    name: str
    arguments: Callable[[Facts], dict[str, Any]]
    output: Callable[[Facts, random.Random], dict[str, Any]]
    errors: tuple[str, ...] = ("upstream timed out after 30 s",)
    # The risky step: a scenario with a question asks a person before this call.
    needs_approval: bool = False


def _search_results(f: Facts, rng: random.Random, site: str) -> dict[str, Any]:
    count = rng.randint(3, 9)
    urls = [f"https://{site}/{f['company'].lower().replace(' ', '-')}/{n}" for n in range(1, 4)]
    return {"ok": True, "results": count, "top": urls[: min(3, count)]}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "search_tickets",
            lambda f: {"customer_email": f["email"], "status": "open", "limit": 5},
            lambda f, r: {
                "ok": True,
                "tickets": [f["ticket"]] + [r.randint(10000, 19999) for _ in range(r.randint(0, 2))],
            },
            ("helpdesk API returned 503", "rate limited by the helpdesk (429)"),
        ),
        Tool(
            "lookup_order",
            lambda f: {"order_id": f["order"]},
            lambda f, r: {
                "ok": True,
                "order_id": f["order"],
                "status": "in transit" if f["issue"] == "has not arrived" else "delivered",
                "items": [f["product"]],
                "total": f["amount"],
                "currency": f["currency"],
            },
            ("order service timed out after 10 s", "order {order} not found in the EU shop"),
        ),
        Tool(
            "track_shipment",
            lambda f: {"tracking_number": f["tracking"], "carrier": "UPS"},
            lambda f, r: (
                {"ok": True, "status": "exception", "last_scan": f"{f['days']} days ago", "location": "Leipzig hub"}
                if f["issue"] == "has not arrived"
                else {
                    "ok": True,
                    "status": "delivered",
                    "delivered": f"{f['days']} days ago",
                    "signed_by": f["customer"],
                }
            ),
            ("carrier API returned 502",),
        ),
        Tool(
            "update_shipping_address",
            lambda f: {"order_id": f["order"], "address": f["address"], "notify_carrier": True},
            lambda f, r: {"ok": True, "order_id": f["order"], "carrier_updated": True},
            ("the parcel already left the depot; the carrier refuses changes",),
        ),
        Tool(
            "check_refund_policy",
            lambda f: {"order_id": f["order"], "reason": f["issue"]},
            lambda f, r: {"ok": True, "eligible": True, "window_days": 30, "max_amount": f["amount"]},
        ),
        Tool(
            "issue_refund",
            lambda f: {"order_id": f["order"], "amount": f["amount"], "currency": f["currency"], "reason": f["issue"]},
            lambda f, r: {"ok": True, "refund_id": f"re_{r.getrandbits(40):010x}", "status": "pending"},
            ("payment provider declined the refund: card expired", "refund API returned 500"),
            needs_approval=True,
        ),
        Tool(
            "send_email",
            lambda f: {"to": f["email"], "subject": f"About your order {f['order']}", "template": "order_update"},
            lambda f, r: {"ok": True, "message_id": f"<{r.getrandbits(32):08x}@mail.example>"},
            ("SMTP relay refused the message (550)",),
        ),
        Tool(
            "get_payment",
            lambda f: {"payment_id": f["payment"]},
            lambda f, r: {
                "ok": True,
                "payment_status": "failed",
                "decline_code": r.choice(["insufficient_funds", "expired_card", "do_not_honor"]),
                "amount": f["amount"],
                "card_last4": f["last4"],
            },
            ("payments API returned 503",),
        ),
        Tool(
            "retry_charge",
            lambda f: {"payment_id": f["payment"], "amount": f["amount"], "currency": f["currency"]},
            lambda f, r: {"ok": True, "status": "succeeded", "charge_id": f"ch_{r.getrandbits(40):010x}"},
            ("card declined again: do_not_honor",),
            needs_approval=True,
        ),
        Tool(
            "get_invoice",
            lambda f: {"invoice_id": f["invoice"]},
            lambda f, r: {"ok": True, "status": "overdue", "due_days_ago": f["days"], "total": f["amount"]},
        ),
        Tool(
            "web_search",
            lambda f: {"query": f"{f['competitor']} pricing {f['plan']} plan per seat", "num_results": 8},
            lambda f, r: {
                "ok": True,
                "results": r.randint(5, 8),
                "top": f"https://www.{f['competitor'].lower().replace(' ', '')}.com/pricing",
            },
            ("search API quota exceeded",),
        ),
        Tool(
            "fetch_page",
            lambda f: {"url": f"https://www.{f['competitor'].lower().replace(' ', '')}.com/pricing"},
            lambda f, r: {"ok": True, "status": 200, "words": r.randint(900, 3000)},
            ("page answered 403 (bot protection)",),
        ),
        Tool(
            "crm_lookup",
            lambda f: {"company": f["company"], "fields": ["owner", "stage", "arr"]},
            lambda f, r: {
                "ok": True,
                "stage": r.choice(["discovery", "trial", "negotiation"]),
                "owner": r.choice(ENGINEERS),
            },
            ("CRM API token expired",),
        ),
        Tool(
            "news_search",
            lambda f: {"query": f'"{f["company"]}" funding OR hiring OR launch', "since_days": 90},
            lambda f, r: _search_results(f, r, "news.example"),
        ),
        Tool(
            "query_metrics",
            lambda f: {"service": f["service"], "metric": "http.p99_latency_ms", "window": "30m"},
            lambda f, r: {
                "ok": True,
                "p99_ms": f["p99"],
                "baseline_ms": r.randint(120, 300),
                "error_rate_pct": f["error_rate"],
            },
            ("metrics backend timed out",),
        ),
        Tool(
            "search_logs",
            lambda f: {"service": f["service"], "query": "level:error", "since": "30m", "limit": 50},
            lambda f, r: {
                "ok": True,
                "matches": r.randint(40, 900),
                "top_error": r.choice(["connection pool exhausted", "upstream timeout", "OOMKilled"]),
            },
            ("log search exceeded 10 s",),
        ),
        Tool(
            "list_deploys",
            lambda f: {"service": f["service"], "since": "6h"},
            lambda f, r: {
                "ok": True,
                "deploys": [{"version": f["version"], "by": f["author"], "minutes_ago": r.randint(8, 50)}],
            },
        ),
        Tool(
            "rollback_deploy",
            lambda f: {"service": f["service"], "to_version": f["previous"]},
            lambda f, r: {"ok": True, "status": "rolled back", "duration_s": r.randint(40, 180)},
            ("rollback blocked: a migration ran since that version",),
            needs_approval=True,
        ),
        Tool(
            "get_diff",
            lambda f: {"repo": f["repo"], "pull_request": f["pr"]},
            lambda f, r: {
                "ok": True,
                "files": f["files"],
                "additions": r.randint(20, 600),
                "deletions": r.randint(0, 300),
            },
            ("GitHub API rate limit exceeded",),
        ),
        Tool(
            "run_tests",
            lambda f: {"repo": f["repo"], "ref": f"pull/{f['pr']}/head", "suite": "unit"},
            lambda f, r: {"ok": True, "passed": r.randint(400, 1800), "failed": 0, "duration_s": r.randint(60, 600)},
            ("2 tests failed: test_refund_rounding, test_webhook_retry", "CI runner lost"),
        ),
        Tool(
            "post_review",
            lambda f: {
                "repo": f["repo"],
                "pull_request": f["pr"],
                "event": "REQUEST_CHANGES",
                "comments": f["blocking"],
            },
            lambda f, r: {"ok": True, "review_id": r.randint(10**6, 10**7)},
            ("GitHub API returned 502",),
            needs_approval=True,
        ),
        Tool(
            "read_inbox",
            lambda f: {"mailbox": "support@", "unread": True, "limit": f["emails"]},
            lambda f, r: {"ok": True, "messages": f["emails"], "oldest_hours": r.randint(2, 30)},
            ("IMAP login failed",),
        ),
        Tool(
            "label_messages",
            lambda f: {"batch": f["batch"], "labels": ["billing", "shipping", "account", "spam"]},
            lambda f, r: {"ok": True, "labelled": f["emails"], "urgent": f["urgent"]},
        ),
        Tool(
            "post_message",
            lambda f: {"channel": f["channel"], "text": "Summary ready"},
            lambda f, r: {"ok": True, "ts": f"{r.randint(1700000000, 1799999999)}.{r.randint(100000, 999999)}"},
            ("Slack API: channel_not_found",),
        ),
    )
}


# --- Scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A question with options a person answers before the tool `before` runs; the answer is `key`."""

    question: str
    details: str
    options: tuple[str, ...]
    before: str
    key: str


@dataclass(frozen=True)
class Scenario:
    """A kind of work an agent does. Texts are format strings over the work's facts."""

    title: str
    prompt: str
    plan: tuple[str, ...]
    # Tool names, or (name, arguments) where this work calls the tool its own way (format strings).
    tools: tuple[str | tuple[str, dict[str, Any]], ...]
    result: str
    failures: tuple[str, ...]
    sources: tuple[str, ...]
    # A person approves (or edits, or rejects) the call of the tool marked `needs_approval` first.
    question: str = ""
    details: str = ""
    # A person answers a question (one of its options, or in their own words) before a call.
    choice: Choice | None = None
    # Facts this kind of work fixes (the channel an ops agent posts to).
    facts: tuple[tuple[str, Any], ...] = ()
    # Work filed as a sub-task while this runs (same facts).
    follow_up: "Scenario | None" = None


SCENARIOS: dict[str, tuple[Scenario, ...]] = {
    "support-bot": (
        Scenario(
            title="Answer ticket #{ticket}: {product} {issue}",
            prompt='Customer {customer} <{email}> writes about order {order}: "My {product} {issue}. {complaint}"',
            plan=("Read the ticket", "Look up the order", "Check the shipment", "Reply to the customer"),
            tools=("search_tickets", "lookup_order", "track_shipment", "send_email"),
            result="Replied to {customer} about order {order}: apologised and shared the tracking link.",
            failures=(
                "The carrier API kept failing; handed the ticket to a person.",
                "Order {order} is not in the shop.",
            ),
            sources=("email", "web"),
            choice=Choice(
                question="How should I answer {first_name} about order {order}?",
                details="{product} {issue}. The parcel's last scan was {days} days ago.",
                options=("Apologise and resend the item", "Apologise and offer a refund", "Explain the delay only"),
                before="send_email",
                key="approach",
            ),
            follow_up=Scenario(
                title="Check on order {order} again in {days} days",
                prompt="Follow-up of ticket #{ticket}: if parcel {tracking} is still stuck, offer {customer} a resend.",
                plan=("Check the shipment", "Update the customer"),
                tools=(
                    "track_shipment",
                    (
                        "send_email",
                        {"to": "{email}", "subject": "Your parcel {tracking}", "template": "shipping_update"},
                    ),
                ),
                result="Parcel {tracking} moved again; told {customer} it arrives in 2 days.",
                failures=("Carrier API unavailable all day.",),
                sources=("schedule",),
            ),
        ),
        Scenario(
            title="Change the delivery address of order {order}",
            prompt="{customer} moved and asks us to send order {order} ({product}) to {address} instead.",
            plan=("Look up the order", "Change the address", "Confirm to the customer"),
            tools=(
                "lookup_order",
                "update_shipping_address",
                ("send_email", {"to": "{email}", "subject": "New address for {order}", "template": "address_changed"}),
            ),
            result="Order {order} now goes to {address}; {first_name} has the confirmation.",
            failures=("The parcel already left the depot; offered {customer} a return instead.",),
            sources=("email", "web"),
        ),
        Scenario(
            title="Help {customer} reset two-factor login",
            prompt="{customer} lost the phone with the authenticator app and cannot sign in (ticket #{ticket}).",
            plan=("Verify the customer", "Reset the second factor", "Confirm by email"),
            tools=(
                "search_tickets",
                ("send_email", {"to": "{email}", "subject": "Your two-factor reset link", "template": "2fa_reset"}),
            ),
            result="Identity checked against ticket #{ticket}; sent {first_name} the reset link.",
            failures=("Could not verify the customer's identity.",),
            sources=("web", "slack"),
        ),
    ),
    "billing-agent": (
        Scenario(
            title="Refund order {order} for {customer}",
            prompt="{customer} asks for a refund of order {order} ({product}, {symbol}{amount}): the item {issue}.",
            plan=(
                "Look up the order",
                "Check the refund policy",
                "Ask for approval",
                "Issue the refund",
                "Tell the customer",
            ),
            tools=("lookup_order", "check_refund_policy", "issue_refund", "send_email"),
            result="Refunded {symbol}{amount} for order {order}; {customer} has been told by email.",
            failures=(
                "The payment provider declined the refund: card expired.",
                "Order {order} is outside the refund window.",
            ),
            sources=("email", "web", "slack"),
            question="Refund {symbol}{amount} to {customer} for order {order}?",
            details="{product} {issue}. The order is within the 30-day window and the policy check passed.",
            follow_up=Scenario(
                title="Confirm the refund for {order} reached {customer}",
                prompt="Follow-up of the {symbol}{amount} refund for order {order}: check it settled and close.",
                plan=("Check the order", "Close the ticket"),
                tools=(
                    "lookup_order",
                    ("send_email", {"to": "{email}", "subject": "Your refund for {order}", "template": "refund_done"}),
                ),
                result="Refund for {order} settled; ticket #{ticket} closed.",
                failures=("The refund is still pending at the provider.",),
                sources=("schedule",),
            ),
        ),
        Scenario(
            title="Investigate failed payment {payment}",
            prompt="The {symbol}{amount} charge for {customer}'s {plan} plan failed twice. Find out why and fix it.",
            plan=("Read the payment", "Find the cause", "Ask for approval", "Retry the charge"),
            tools=("get_payment", "search_tickets", "retry_charge"),
            result="The retry of {symbol}{amount} succeeded; {customer}'s {plan} plan stays active.",
            failures=("The card was declined again (do_not_honor).", "Payments API unavailable for 20 minutes."),
            sources=("schedule", "api"),
            question="Retry the {symbol}{amount} charge on {customer}'s card ending {last4}?",
            details="Two earlier attempts failed with a soft decline; the bank usually accepts a retry after 24 h.",
        ),
        Scenario(
            title="Chase overdue invoice {invoice}",
            prompt="Invoice {invoice} ({symbol}{amount}) for {company} is {days} days overdue. Send a polite reminder.",
            plan=("Read the invoice", "Send the reminder"),
            tools=(
                "get_invoice",
                ("send_email", {"to": "billing@{domain}", "subject": "Reminder: {invoice}", "template": "dunning"}),
            ),
            result="Reminder for {invoice} sent to {company}'s billing contact.",
            failures=("{company} has no billing contact on file.",),
            sources=("schedule",),
        ),
    ),
    "research-agent": (
        Scenario(
            title="Find out what {company} announced this quarter",
            prompt="Account team asks: what did {company} announce since the summer (funding, launches, hires)?",
            plan=("Search the news", "Read the sources", "Write the summary"),
            tools=("news_search", ("fetch_page", {"url": "https://news.example/{domain}/latest"})),
            result="{company}: a Series B, a new VP of Support, and a launch in Berlin; sources in the task.",
            failures=("No news source answered within the time limit.",),
            sources=("slack",),
        ),
        Scenario(
            title="Compare our {plan} plan with {competitor}",
            prompt="Sales asks how our {plan} plan compares with {competitor} for a {seats}-seat team. Cite sources.",
            plan=("Search the web", "Read the pricing pages", "Write the comparison"),
            tools=(
                "web_search",
                "fetch_page",
                ("post_message", {"channel": "{channel}", "text": "{plan} plan vs {competitor} at {seats} seats"}),
            ),
            result="{competitor} costs about 18% more per seat at {seats} seats; comparison posted to {channel}.",
            failures=("{competitor}'s pricing page blocks automated readers.",),
            sources=("slack",),
            facts=(("channel", "#sales"),),
        ),
        Scenario(
            title="Summarize what customers say about {competitor}",
            prompt="Collect the main complaints about {competitor} from public reviews this quarter.",
            plan=("Search reviews", "Group the complaints", "Write the summary"),
            tools=(
                ("web_search", {"query": "{competitor} reviews complaints support", "num_results": 10}),
                ("fetch_page", {"url": "https://www.g2.com/products/{competitor}/reviews"}),
            ),
            result="Top complaints about {competitor}: slow support replies, price increases, weak reporting.",
            failures=("Search API quota exceeded for today.",),
            sources=("slack", "api"),
        ),
    ),
    "triage-agent": (
        Scenario(
            title="Triage support inbox, batch {batch}",
            prompt="Label and route the {emails} newest unread emails in support@ (batch {batch}); flag urgent ones.",
            plan=("Read the inbox", "Label each message", "Flag the urgent ones"),
            tools=("read_inbox", "label_messages"),
            result="{emails} emails labelled; {urgent} urgent ones flagged for the on-duty person.",
            failures=("The mailbox refused the login.",),
            sources=("schedule",),
            choice=Choice(
                question="Who should get the urgent emails of batch {batch}?",
                details="{urgent} of {emails} emails look urgent (refund threats, a legal notice).",
                options=("The on-duty person", "The support lead", "Leave them in the inbox"),
                before="label_messages",
                key="urgent_to",
            ),
        ),
        Scenario(
            title="Route ticket #{ticket} to the right team",
            prompt="Ticket #{ticket} from {customer} mentions order {order}; decide which team owns it.",
            plan=("Read the ticket", "Route it"),
            tools=("search_tickets", "lookup_order"),
            result="Ticket #{ticket} routed to Shipping.",
            failures=("The ticket was deleted by the customer.",),
            sources=("email",),
        ),
    ),
    "ops-agent": (
        Scenario(
            title="Alert: {service} p99 latency at {p99} ms",
            prompt="Datadog: {service} p99 latency {p99} ms and {error_rate}% errors for 15 minutes. Investigate.",
            plan=("Read the metrics", "Search the logs", "Check recent deploys", "Ask for approval", "Roll back"),
            tools=("query_metrics", "search_logs", "list_deploys", "rollback_deploy"),
            result="Rolled {service} back to {previous}; p99 is back under 300 ms. Update posted in {channel}.",
            failures=("Rollback blocked: a migration ran since {previous}.", "Metrics backend unavailable."),
            sources=("pagerduty", "datadog"),
            facts=(("channel", "#incidents"),),
            question="Roll {service} back from {version} to {previous}?",
            details="Errors began 12 minutes after {author} deployed {version}; the logs show pool exhaustion.",
            follow_up=Scenario(
                title="Draft the postmortem for the {service} incident",
                prompt="Follow-up of the {service} latency alert: timeline, cause ({version}), what we change.",
                plan=("Collect the timeline", "Write the draft"),
                tools=(
                    ("search_logs", {"service": "{service}", "query": "level:error", "since": "3h", "limit": 200}),
                    (
                        "post_message",
                        {"channel": "{channel}", "text": "Postmortem draft: {service} latency after {version}"},
                    ),
                ),
                result="Postmortem draft for {service} posted to {channel}.",
                failures=("Logs for the incident window were already rotated.",),
                sources=("pagerduty",),
            ),
        ),
        Scenario(
            title="Check disk usage on {service} hosts",
            prompt="Weekly check: report {service} hosts above 80% disk and what fills them.",
            plan=("Read the metrics", "Search the logs"),
            tools=(
                ("query_metrics", {"service": "{service}", "metric": "system.disk.used_pct", "window": "1h"}),
                ("search_logs", {"service": "{service}", "query": "disk OR ENOSPC", "since": "24h", "limit": 20}),
            ),
            result="Two {service} hosts at 86% disk: rotated logs, now at 41%.",
            failures=("Metrics backend timed out.",),
            sources=("schedule",),
        ),
    ),
    "sales-assistant": (
        Scenario(
            title="Prepare the call with {company}",
            prompt="Brief me before tomorrow's call with {company} ({seats} seats, {plan} trial): news, CRM notes.",
            plan=("Read the CRM", "Search the news", "Write the brief"),
            tools=(
                "crm_lookup",
                "news_search",
                ("post_message", {"channel": "{channel}", "text": "Call brief for {company} ({seats} seats)"}),
            ),
            result="Brief for {company} posted to {channel}: trial usage up 40%, new VP of Support since May.",
            failures=("The CRM token has expired.",),
            sources=("slack", "web"),
            choice=Choice(
                question="Which plan should the brief suggest to {company}?",
                details="{seats} seats, trial of the {plan} plan; usage is up 40% this month.",
                options=("Starter", "Team", "Business"),
                before="post_message",
                key="plan_suggested",
            ),
            facts=(("channel", "#sales"),),
        ),
        Scenario(
            title="Qualify inbound lead from {company}",
            prompt="{company} filled in the demo form for {seats} seats. Check fit and suggest a next step.",
            plan=("Read the CRM", "Search the news"),
            tools=("crm_lookup", "news_search"),
            result="{company} fits the {plan} plan; suggested a demo with an account executive this week.",
            failures=("{company} is already a customer under another name.",),
            sources=("web",),
        ),
    ),
    "code-reviewer": (
        Scenario(
            title="Review PR #{pr} in {repo}: {pr_subject}",
            prompt='Review {author}\'s pull request #{pr} in {repo} ("{pr_subject}", {files} files): tests, locking.',
            plan=("Read the diff", "Run the tests", "Ask for approval", "Post the review"),
            tools=("get_diff", "run_tests", "post_review"),
            result="Requested changes on #{pr}: {blocking} blocking comments on the migration and the error handling.",
            failures=("CI failed: 2 tests failed on the branch.", "GitHub API rate limit exceeded."),
            sources=("github",),
            question="Post a review requesting changes on #{pr} with {blocking} blocking comments?",
            details="{author}'s change touches {files} files; tests pass but the migration locks the orders table.",
            follow_up=Scenario(
                title="Re-review #{pr} after {author}'s fixes",
                prompt="{author} pushed fixes to #{pr} in {repo}; check the blocking comments were addressed.",
                plan=("Read the diff", "Run the tests"),
                tools=("get_diff", "run_tests"),
                result="All {blocking} blocking comments on #{pr} addressed; approved.",
                failures=("CI failed again on the branch.",),
                sources=("github",),
            ),
        ),
        Scenario(
            title="Check flaky test in {repo}",
            prompt="test_webhook_retry failed 3 times this week in {repo}. Find out why.",
            plan=("Run the tests", "Read the diff"),
            tools=(
                ("run_tests", {"repo": "{repo}", "ref": "main", "suite": "unit", "only": "test_webhook_retry"}),
                "get_diff",
            ),
            result="test_webhook_retry depends on wall-clock time; proposed a frozen clock in #{pr}.",
            failures=("CI runner lost twice; could not reproduce.",),
            sources=("github", "schedule"),
        ),
    ),
}
GENERIC = SCENARIOS["support-bot"] + SCENARIOS["billing-agent"]


def scenarios_for(agent: str) -> tuple[Scenario, ...]:
    return SCENARIOS.get(agent, GENERIC)


@dataclass
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    output: dict[str, Any]
    failed: bool
    prompt_tokens: int
    completion_tokens: int


class Work:
    """One piece of work of a scenario: its facts drawn once, every text and call written from them.

    A run id (`r-3fa2c1d0`, kept in the task's metadata as `run`) is the seed of the scenario and
    facts, so whoever picks the task up later (another worker, the next simulator run) does the
    same work: `Work.for_run(agent, run)`. A follow-up's run is its parent's plus `.1`.
    """

    def __init__(self, scenario: Scenario, rng: random.Random, facts: Facts | None = None, run: str = ""):
        self.scenario = scenario
        self.rng = rng
        self.facts = facts if facts is not None else {**_common(rng), **dict(scenario.facts)}
        self.run = run

    @classmethod
    def for_run(cls, agent: str, run: str) -> "Work":
        base, _, follow_up = run.partition(".")
        rng = random.Random(base)
        work = cls(rng.choice(scenarios_for(agent)), rng, run=base)
        if follow_up and (child := work.follow_up()) is not None:
            return child
        return work

    @classmethod
    def new(cls, agent: str, rng: random.Random, *, with_question: bool = False) -> "Work":
        """Fresh work for `agent`; `with_question`: one that asks a person (when the agent has such work)."""
        wanted = with_question and any(s.question or s.choice for s in scenarios_for(agent))
        while True:
            work = cls.for_run(agent, f"r-{rng.getrandbits(32):08x}")
            if work.has_question or not wanted:
                return work

    def text(self, template: str) -> str:
        return template.format(**self.facts)

    @property
    def title(self) -> str:
        return self.text(self.scenario.title)

    @property
    def prompt(self) -> str:
        return self.text(self.scenario.prompt)

    @property
    def result(self) -> str:
        return self.text(self.scenario.result)

    def failure(self) -> str:
        return self.text(self.rng.choice(self.scenario.failures))

    def source(self) -> str:
        return self.rng.choice(self.scenario.sources)

    @property
    def has_question(self) -> bool:
        return bool(self.scenario.question or self.scenario.choice)

    def checklist(self, done: int) -> dict[str, Any]:
        """The deep-planning object with the first `done` steps ticked."""
        steps = self.scenario.plan
        return {
            "enabled": True,
            "tasks": [{"id": f"step-{k}", "title": title, "completed": k <= done} for k, title in enumerate(steps, 1)],
        }

    def plan_step_of(self, call_index: int) -> int:
        """How many plan steps are done once the first `call_index` tool calls are."""
        total = len(self.scenario.tools)
        return min(len(self.scenario.plan), round(len(self.scenario.plan) * call_index / max(total, 1)))

    @property
    def tools(self) -> tuple[Tool, ...]:
        return tuple(TOOLS[entry if isinstance(entry, str) else entry[0]] for entry in self.scenario.tools)

    def arguments(self, index: int) -> dict[str, Any]:
        entry = self.scenario.tools[index]
        if isinstance(entry, str):
            return TOOLS[entry].arguments(self.facts)
        return {key: self.text(value) if isinstance(value, str) else value for key, value in entry[1].items()}

    def approval_index(self) -> int | None:
        """The index of the call a person must approve first (None: nothing to approve)."""
        if not self.scenario.question:
            return None
        return next((i for i, tool in enumerate(self.tools) if tool.needs_approval), None)

    def call(self, index: int, *, fail_chance: float = 0.08) -> ToolCall:
        """The `index`-th tool call: its arguments and output (sometimes a failure)."""
        tool = self.tools[index]
        failed = self.rng.random() < fail_chance
        output = (
            {"ok": False, "error": self.text(self.rng.choice(tool.errors))}
            if failed
            else tool.output(self.facts, self.rng)
        )
        return ToolCall(
            tool=tool.name,
            arguments=self.arguments(index),
            output=output,
            failed=failed,
            prompt_tokens=self.rng.randint(300, 3500),
            completion_tokens=self.rng.randint(30, 600),
        )

    def question_indexes(self) -> list[int]:
        """The calls a person is asked about first (an approval, a choice)."""
        choice = self.scenario.choice
        return [
            i
            for i, tool in enumerate(self.tools)
            if i == self.approval_index() or (choice is not None and tool.name == choice.before)
        ]

    def hitl(self, index: int) -> dict[str, Any]:
        """What the native API's HITL request takes before call `index`: approve the call, or choose."""
        if index == self.approval_index():
            return {
                "question": self.text(self.scenario.question),
                "details": self.text(self.scenario.details),
                "payload": {"action": self.tools[index].name, **self.arguments(index)},
            }
        choice = self.scenario.choice
        if choice is None or self.tools[index].name != choice.before:
            raise ValueError(f"Nobody is asked anything before call {index} of {self.scenario.title!r}.")
        return {
            "question": self.text(choice.question),
            "details": self.text(choice.details),
            "options": [self.text(option) for option in choice.options],
        }

    def answered(self, index: int, answer: str) -> dict[str, Any]:
        """Call `index`'s arguments with a person's answer to the choice before it."""
        return {**self.arguments(index), self.scenario.choice.key: answer}

    def follow_up(self) -> "Work | None":
        """The sub-task this work files, on the same facts (None if it files none)."""
        follow_up = self.scenario.follow_up
        return Work(follow_up, self.rng, self.facts, run=f"{self.run}.1") if follow_up else None

    def metadata(self) -> dict[str, Any]:
        """The run id and the facts a person searches by (those the title and prompt mention)."""
        texts = self.scenario.title + self.scenario.prompt
        keys = ("customer", "order", "ticket", "invoice", "payment", "company", "service", "repo", "pr")
        return {"run": self.run, **{key: self.facts[key] for key in keys if "{" + key + "}" in texts}}
