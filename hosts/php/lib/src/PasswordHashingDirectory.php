<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A {@see Directory} that stores a User's `password` only as a one-way hash
 * (`password_hash()`) and never returns it. {@see ScimServer} declares this to the component
 * (policy `directory.hashes_passwords`), which then hands it the password a client sets; to
 * any other directory the component hands none (it drops the password, with a warning).
 *
 * Its contract: a `password` in a created or replaced User's JSON is what the client just
 * sent, to hash and take out of the JSON; a replace without one keeps the stored hash; a
 * stored resource never carries the password or its hash.
 */
interface PasswordHashingDirectory extends Directory
{
    /** Whether $password is the one last set for the user named $userName. */
    public function verifyPassword(string $userName, string $password): bool;
}
