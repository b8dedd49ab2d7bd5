-- A group's fan-in in database time: the last member's finish, the callback's claim
-- (started_at), and the seconds between them; members are ids first..last - 1 and the
-- callback is id last (a group's callback follows its members).
SELECT extract(epoch FROM c.started_at - m.last_finish)::float8 AS fan_in_seconds,
       m.done
FROM (SELECT max(finished_at) AS last_finish, count(*) FILTER (WHERE state = 'succeeded') AS done
      FROM pgq.jobs WHERE id >= %(first)s AND id < %(last)s) AS m,
     pgq.jobs AS c
WHERE c.id = %(last)s
