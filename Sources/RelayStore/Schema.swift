import GRDB

/// Versioned migrations of the store's database. Add a new migration for every change; never edit
/// a released one.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: messages, mailbox counters, delivered ids") { db in
            try db.execute(
                sql: """
                    CREATE TABLE message (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        recipient BLOB NOT NULL,
                        msg_id BLOB NOT NULL,
                        sender BLOB NOT NULL,
                        frame BLOB NOT NULL,
                        size INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        UNIQUE (recipient, msg_id)
                    );
                    CREATE INDEX message_by_recipient ON message (recipient, seq);
                    CREATE INDEX message_by_age ON message (created_at);

                    -- Counters kept by triggers, so that bounds are checked with one lookup and
                    -- stay right when the mailbox command purges while the relay runs.
                    CREATE TABLE mailbox (
                        recipient BLOB PRIMARY KEY,
                        messages INTEGER NOT NULL,
                        bytes INTEGER NOT NULL,
                        oldest REAL NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE pair (
                        recipient BLOB NOT NULL,
                        sender BLOB NOT NULL,
                        messages INTEGER NOT NULL,
                        PRIMARY KEY (recipient, sender)
                    ) WITHOUT ROWID;
                    CREATE TABLE totals (
                        id INTEGER PRIMARY KEY CHECK (id = 0),
                        messages INTEGER NOT NULL,
                        bytes INTEGER NOT NULL
                    );
                    INSERT INTO totals (id, messages, bytes) VALUES (0, 0, 0);

                    CREATE TRIGGER message_added AFTER INSERT ON message BEGIN
                        INSERT INTO mailbox (recipient, messages, bytes, oldest)
                            VALUES (new.recipient, 1, new.size, new.created_at)
                            ON CONFLICT (recipient) DO UPDATE SET
                                messages = messages + 1, bytes = bytes + new.size,
                                oldest = min(oldest, new.created_at);
                        INSERT INTO pair (recipient, sender, messages) VALUES (new.recipient, new.sender, 1)
                            ON CONFLICT (recipient, sender) DO UPDATE SET messages = messages + 1;
                        UPDATE totals SET messages = messages + 1, bytes = bytes + new.size WHERE id = 0;
                    END;
                    CREATE TRIGGER message_removed AFTER DELETE ON message BEGIN
                        UPDATE mailbox SET messages = messages - 1, bytes = bytes - old.size
                            WHERE recipient = old.recipient;
                        DELETE FROM mailbox WHERE recipient = old.recipient AND messages <= 0;
                        UPDATE pair SET messages = messages - 1 WHERE recipient = old.recipient AND sender = old.sender;
                        DELETE FROM pair WHERE recipient = old.recipient AND sender = old.sender AND messages <= 0;
                        UPDATE totals SET messages = messages - 1, bytes = bytes - old.size WHERE id = 0;
                    END;

                    -- Message ids recently ACKed by their recipient: a re-sent copy is not stored again.
                    CREATE TABLE delivered (
                        recipient BLOB NOT NULL,
                        msg_id BLOB NOT NULL,
                        at REAL NOT NULL,
                        PRIMARY KEY (recipient, msg_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX delivered_by_age ON delivered (at);
                    """)
        }
        return migrator
    }
}
