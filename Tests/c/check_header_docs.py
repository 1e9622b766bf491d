#!/usr/bin/env python3
"""Every argument of every pk_ function in the header has a @param line (@param, @param[out] or
@param[in,out]) in the comment above its declaration (a comment may document a run of
declarations), and every enum value of an enum other than pk_status_code starts with PK_ plus
the enum's name (without pk_ and a trailing _kind), or is an alias (= another name) kept for an
older spelling. Usage: check_header_docs.py include/prunekit.h"""
import re
import sys

text = open(sys.argv[1]).read()
problems = []
declared = set(re.findall(r'PK_API[^;(]*?\b(pk_\w+)\s*\(', text))
documented = set()
for block in re.finditer(r'/\*((?:(?!\*/).)*)\*/\s*((?:PK_API[^;]*;\s*)+)', text, re.S):
    comment = block.group(1)
    for declaration in re.findall(r'PK_API[^;]*;', block.group(2)):
        name = re.search(r'(pk_\w+)\s*\(', declaration).group(1)
        documented.add(name)
        arguments = declaration[declaration.index('(') + 1:declaration.rindex(')')].strip()
        if arguments == 'void':
            continue
        for argument in arguments.split(','):
            argument_name = re.findall(r'\w+', argument)[-1]
            if not re.search(r'@param(\[(in|out|in,out)\])?\s+' + argument_name + r'\b', comment):
                problems.append(f'{name}: no @param for {argument_name}')
problems += [f'{name}: no comment above the declaration' for name in sorted(declared - documented)]

for enum in re.finditer(r'enum (pk_\w+)\s*\{(.*?)\};', text, re.S):
    name, body = enum.group(1), re.sub(r'/\*.*?\*/', '', enum.group(2), flags=re.S)
    if name == 'pk_status_code':
        continue
    prefix = 'PK_' + re.sub(r'_kind$', '', name[3:]).upper() + '_'
    for value, definition in re.findall(r'(PK_\w+)\s*=\s*([^,]+)', body):
        if not value.startswith(prefix) and not definition.strip().startswith('PK_'):
            problems.append(f'enum {name}: {value} does not start with {prefix}')

for problem in problems:
    print(problem)
print(f'header docs: {len(declared)} functions, every argument documented' if not problems
      else f'header docs: {len(problems)} problems')
sys.exit(1 if problems else 0)
