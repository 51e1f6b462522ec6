"""What a request does, once it is known who asks: one copy of each rule for the API routes and the web app's
pages (docs/design.md §8.2). Each raises `ApiError` for a refusal, which a page turns into words."""
