-- Organizations, their users and their courses. Composite keys let every table that
-- refers to a user or a course also prove that it belongs to the same organization.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    email            text NOT NULL UNIQUE CHECK (email LIKE '%_@_%'),
    name             text NOT NULL CHECK (name <> ''),
    role             text NOT NULL CHECK (role IN ('member', 'admin')),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (id, organization_id)
);

CREATE TABLE courses (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    owner_id         uuid NOT NULL,
    title            text NOT NULL CHECK (title <> ''),
    status           text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'initialized')),
    initialized_at   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (id, organization_id),
    UNIQUE (organization_id, title),
    FOREIGN KEY (owner_id, organization_id) REFERENCES users (id, organization_id),
    CHECK ((status = 'initialized') = (initialized_at IS NOT NULL))
);

-- The starting structure that the `initialize` job creates.
CREATE TABLE course_modules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id   uuid NOT NULL REFERENCES courses (id),
    position    integer NOT NULL CHECK (position >= 1),
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (course_id, position)
);
