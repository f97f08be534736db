//! Types that cross process boundaries: ids, API errors, access-token claims and bus events.
