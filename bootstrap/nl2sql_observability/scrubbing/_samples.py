"""Values the scrubber must redact, one or more per kind: an allow-list entry matching any of them
would keep real secrets, so it is refused at start-up. Made up here (random-looking, never a value
someone would list to keep)."""

from __future__ import annotations

POSITIVE_SAMPLES: tuple[str, ...] = (
    "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0",
    "sk-ant-api03-Qm7Zr2Lw9Xc4Vb8Nn1Kk5Jj3Hh6Gg0",
    "AKIAZ7Q2M4X9R1T5W8Y3",
    "ghp_Qm7Zr2Lw9Xc4Vb8Nn1Kk5Jj3Hh6Gg0Ff4DdEe",
    "glpat-Qm7Zr2Lw9Xc4Vb8Nn1Kk5",
    "xoxb-7301294485-Qm7Zr2Lw9Xc4Vb8N",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJxN3oyIn0.Qm7Zr2Lw9Xc4Vb8Nn1Kk5Jj3",
    "hunter2",
    "Tr0ub4dor&3x",
    "correct horse battery staple",
    "q7z2.lw9x@mail-c4vb8.test",
    "4929 7185 3062 4177",
    "4929718530624177",
    "GB33BUKB20201555555555",
    "219-09-9999",
    "+44 20 7946 0958",
    "(415) 555-0132",
    "203.0.113.77",
    "2001:db8:85a3::8a2e:370:7334",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYq7z2lw9x",
    "dXNlcjpwYXNzd29yZA==",
)
