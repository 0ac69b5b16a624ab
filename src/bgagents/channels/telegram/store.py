"""The channel's own tables, beside the runtime's: how far it has read Telegram's updates, and how far
it has delivered each chat's responses.

The read offset of an update that became a conversation event is written in the transaction that
stores the event (see `Source`), so an update is never taken twice and never lost. Delivery is
tracked per message sent: after a crash, a response goes on from its next unsent piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ...conversation import tables

metadata = sa.MetaData()

offsets = sa.Table(
    "bg_telegram_offsets",
    metadata,
    sa.Column("bot_id", sa.BigInteger, primary_key=True),
    sa.Column("update_id", sa.BigInteger, nullable=False),  # the last update handled
)

deliveries = sa.Table(
    "bg_telegram_deliveries",
    metadata,
    sa.Column("bot_id", sa.BigInteger, primary_key=True),
    sa.Column("chat_id", sa.BigInteger, primary_key=True),
    sa.Column("sent_seq", sa.Integer, nullable=False),  # every response up to this one is sent
    sa.Column("sending_seq", sa.Integer, nullable=True),  # the response being sent, if any...
    sa.Column("sending_parts", sa.Integer, nullable=False, default=0),  # ...and how many of its messages are out
)

refused = sa.Table(
    "bg_telegram_refused",
    metadata,
    sa.Column("bot_id", sa.BigInteger, primary_key=True),
    sa.Column("chat_id", sa.BigInteger, primary_key=True),  # told once it is not allowed; nothing else of it kept
)


@dataclass(frozen=True)
class Cursor:
    sent_seq: int
    sending_seq: int | None
    sending_parts: int

    def parts_sent(self, seq: int) -> int:
        return self.sending_parts if self.sending_seq == seq else 0


class TelegramStore:
    def __init__(self, engine: sa.Engine, bot_id: int) -> None:
        self.engine = engine
        self.bot_id = bot_id

    # -- updates in --------------------------------------------------------------------------------

    def record_offset(self, conn: sa.Connection, update_id: int) -> None:
        """The update is handled (kept as the highest handled one)."""
        changed = conn.execute(offsets.update().where(offsets.c.bot_id == self.bot_id,
                                                      offsets.c.update_id < update_id)
                               .values(update_id=update_id)).rowcount
        if not changed and conn.execute(sa.select(offsets.c.bot_id).where(offsets.c.bot_id == self.bot_id)).first() \
                is None:
            conn.execute(offsets.insert().values(bot_id=self.bot_id, update_id=update_id))

    def record_offset_sync(self, update_id: int) -> None:
        with self.engine.begin() as conn:
            self.record_offset(conn, update_id)

    def offset_sync(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(offsets.c.update_id).where(offsets.c.bot_id == self.bot_id)).scalar()
            return int(value) if value is not None else None

    def refuse_once_sync(self, chat_id: int) -> bool:
        """True the first time a chat that is not allowed is seen (it gets its one refusal then)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(refused.c.chat_id).where(refused.c.bot_id == self.bot_id,
                                                                refused.c.chat_id == chat_id)).first() is not None:
                return False
            conn.execute(refused.insert().values(bot_id=self.bot_id, chat_id=chat_id))
            return True

    # -- responses out -----------------------------------------------------------------------------

    def cursor_sync(self, chat_id: int, conversation_id: str) -> Cursor:
        """Where the chat's delivery stands; a chat seen for the first time starts after the responses
        its conversation already has (they were never meant for Telegram)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.bot_id == self.bot_id,
                                                           deliveries.c.chat_id == chat_id)).first()
            if row is None:
                last = conn.execute(sa.select(sa.func.max(tables.conv_responses.c.seq))
                                    .where(tables.conv_responses.c.conversation_id == conversation_id)).scalar()
                conn.execute(deliveries.insert().values(bot_id=self.bot_id, chat_id=chat_id, sent_seq=last or 0,
                                                        sending_seq=None, sending_parts=0))
                return Cursor(last or 0, None, 0)
            return Cursor(row.sent_seq, row.sending_seq, row.sending_parts)

    def sent_part_sync(self, chat_id: int, seq: int, parts: int, done: bool) -> None:
        values = {"sent_seq": seq, "sending_seq": None, "sending_parts": 0} if done else \
            {"sending_seq": seq, "sending_parts": parts}
        with self.engine.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.bot_id == self.bot_id,
                                                   deliveries.c.chat_id == chat_id).values(**values))
