<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The CMS's user store, as the server role needs it (the WIT `directory` import), served
 * by PHP from the application's database. The guest never scans every user: lists and
 * searches are one {@see query()} with a filter, paging and sorting.
 *
 * Failures are {@see DirectoryException}s with the WIT case (`not-found`, `conflict`,
 * `version-mismatch`, `invalid-filter`, `unavailable`, `other`); the component turns them
 * into the right SCIM error (404, 409 uniqueness, 412, 400 invalidFilter, 503, 500).
 */
interface Directory
{
    /**
     * The resource with this id, or null.
     *
     * @throws DirectoryException
     */
    public function get(ResourceKind $kind, string $id): ?StoredResource;

    /**
     * One page of the resources matching the search's filter, sorted as asked.
     *
     * @throws DirectoryException `invalid-filter` for a filter the store cannot evaluate
     */
    public function query(ResourceKind $kind, Search $search): QueryPage;

    /**
     * Stores a new resource (its id in $json is empty: the store assigns one) and returns it
     * as stored. For a user, $cms is the same user as CMS fields (the policy's reverse
     * mapping), so the store can keep a normal CMS user beside it; `active=false` blocks it.
     *
     * @throws DirectoryException `conflict` when userName/displayName is taken
     */
    public function create(ResourceKind $kind, string $json, ?CmsUser $cms): StoredResource;

    /**
     * Replaces a resource, only if its version is $ifVersion when one is given.
     *
     * @throws DirectoryException `not-found`, `version-mismatch`, `conflict`
     */
    public function replace(
        ResourceKind $kind,
        string $id,
        string $json,
        ?CmsUser $cms,
        ?string $ifVersion,
    ): StoredResource;

    /**
     * Deletes a resource; false when there was none.
     *
     * @throws DirectoryException
     */
    public function delete(ResourceKind $kind, string $id): bool;
}
