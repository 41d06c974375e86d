"""APNs pushes: the HTTP/2 client (``apns``) and the push service over storage (``service``)."""
